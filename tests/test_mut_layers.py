"""Fast behavioural tests for workbench.measure.layers (mutation target `layers`, tools/mutate.py).

Coverage (Σ layers / end-to-end) and its reasons, on hand-made per-layer tables whose sums are known;
the TensorRT inspector/IProfiler parsers on literal inputs in the documented formats (format tests: no
TensorRT runs here); ORT trace aggregation on hand-written Chrome-trace events; profile() and the CSV on a
real ORT session of a bundled model. Expected numbers are computed by hand from the inputs.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.data import synthetic_inputs
from workbench.errors import RunError, UsageError
from workbench.measure.latency import LatencyResult
from workbench.measure.layers import (COLUMNS, COVERAGE_GOAL, COVERAGE_UPPER, RUN_COLUMNS, Coverage, coverage,
                                      coverage_reason, parse_ort_trace, parse_trt_layer_info, profile,
                                      profile_layers, save_layers_csv, shape_text, trt_layer_rows)
from workbench.measure.mapping import UNMAPPED, GraphIndex
from workbench.model import load
from workbench.variant import Variant

from conftest import DrawnBars

QUIET = BuildOptions(progress=False)


def _lat(variant="v", times=(10.0, 10.0, 10.0, 10.0)):
    return LatencyResult(variant=variant, times_ms=list(times))


# ------------------------------------------------------------------------------------------ coverage
def test_coverage_sums_only_the_latency_variants_rows_and_the_tables_basis():
    df = pd.DataFrame({"variant": ["v", "v", "v", "w"], "time_ms": [4.0, 3.0, 2.0, 50.0],
                       "time_basis": ["cupti-gpu", "cupti-gpu", "host", "cupti-gpu"],
                       "provider": ["CUDA", "CUDA", "CPU", "CUDA"], "onnx_node": ["a", "b", "c", "a"]})
    c = coverage(df, _lat("v"))  # mean 10 ms
    assert c.variant == "v" and c.basis == "cupti-gpu"
    assert c.layers_ms == pytest.approx(7.0)        # a + b on the GPU basis; w's 50 ms and the CPU node left out
    assert c.other_basis_ms == pytest.approx(2.0)   # the CPU node's host time
    assert c.ratio == pytest.approx(0.7) and c.e2e_ms == 10.0 and c.flagged
    assert c.goal == COVERAGE_GOAL and c.upper == COVERAGE_UPPER
    assert c.profiled_run_ms is None and c.in_run is None and c.gpu_busy_ms is None


def test_coverage_single_variant_table_and_stat_choice():
    df = pd.DataFrame({"variant": ["v"] * 2, "time_ms": [4.5, 4.5]})
    lat = _lat("v", (8.0, 9.0, 10.0, 13.0))  # mean 10, p50 9.5
    assert coverage(df, lat).ratio == pytest.approx(0.9) and not coverage(df, lat).flagged
    assert coverage(df, lat, stat="p50_ms").ratio == pytest.approx(9.0 / 9.5)
    assert coverage(df, lat, goal=0.95).flagged and coverage(df, lat, goal=0.95).goal == 0.95
    assert coverage(df, lat, upper=0.8).flagged  # 0.9 above an upper of 0.8
    assert coverage(df, lat, upper=0.8).reason.startswith("the profiled run was slower")


def test_coverage_zero_latency_is_not_a_ratio():
    c = coverage(pd.DataFrame({"variant": ["v"], "time_ms": [1.0]}), _lat("v", (0.0, 0.0)))
    assert math.isnan(c.ratio) and c.flagged and c.reason == "no end-to-end time to compare with"


def test_coverage_reads_run_facts_from_columns_of_a_concatenated_table():
    a = pd.DataFrame({"variant": ["v", "v"], "time_ms": [3.0, 1.5], "onnx_node": ["x", "cpu1"],
                      "provider": ["CUDA", "CPU"], "time_basis": ["cupti-gpu", "host"],
                      "gpu_busy_ms": [4.0, 4.0], "gpu_span_ms": [8.0, 8.0], "gpu_idle_share": [0.5, 0.5],
                      "profiled_run_ms": [7.5, 7.5]})
    b = a.assign(variant="w", profiled_run_ms=99.0)
    both = pd.concat([a, b], ignore_index=True)  # concat drops attrs: facts come from the columns
    c = coverage(both, _lat("v"))
    assert c.basis == "cupti-gpu" and c.layers_ms == 3.0 and c.other_basis_ms == 1.5
    assert c.gpu_busy_ms == 4.0
    assert c.profiled_run_ms == 7.5 and c.in_run == pytest.approx(3.0 / 7.5)  # v's own run, not w's
    # GPU idle 50 % and 1.5 ms of CPU-provider time > 0.25 * 0.5 * 8: the CPU-node reason, naming the node
    assert c.reason.startswith("the GPU was idle 50% of each profiled run, waiting for 1 node(s) ONNX Runtime")
    assert "1.5 ms host time per run: cpu1)" in c.reason and c.reason.endswith("Σ layers counts GPU work only")


def test_coverage_without_columns_uses_attrs_profiled_run():
    df = pd.DataFrame({"variant": ["v"], "time_ms": [9.0]})
    df.attrs["profiled_run_ms"] = 12.0
    c = coverage(df, _lat("v"))
    assert c.profiled_run_ms == 12.0 and c.in_run == pytest.approx(0.75)
    assert c.basis == "" and not c.flagged and c.reason == ""


def test_host_basis_is_inferred_only_when_every_row_is_host():
    only_host = pd.DataFrame({"variant": ["v"] * 2, "time_ms": [2.0, 2.0], "time_basis": ["host", "host"]})
    c = coverage(only_host, _lat("v"))
    assert c.basis == "host" and c.layers_ms == 4.0
    mixed = pd.DataFrame({"variant": ["v"] * 3, "time_ms": [2.0, 2.0, 1.0],
                          "time_basis": ["host-launch", "tensorrt-iprofiler", "host"]})
    c2 = coverage(mixed, _lat("v"))  # two non-host bases: no single basis, every row summed
    assert c2.basis == "" and c2.layers_ms == 5.0 and c2.other_basis_ms == 0.0


def test_coverage_json_and_in_run():
    c = Coverage(variant="v", layers_ms=6.0, e2e_ms=8.0, ratio=0.75, profiled_run_ms=12.0, basis="host",
                 reason="r", gpu_busy_ms=1.5, other_basis_ms=0.5)
    assert c.flagged and c.in_run == 0.5
    assert c.to_json() == {"variant": "v", "layers_ms": 6.0, "e2e_ms": 8.0, "coverage": 0.75, "goal": 0.9,
                           "upper": 1.1, "flagged": True, "basis": "host", "reason": "r", "gpu_busy_ms": 1.5,
                           "other_basis_ms": 0.5, "profiled_run_ms": 12.0, "in_run": 0.5}
    inside = Coverage(variant="v", layers_ms=1.0, e2e_ms=1.0, ratio=1.0)
    assert not inside.flagged and inside.in_run is None and inside.to_json()["in_run"] is None
    assert Coverage(variant="v", layers_ms=1, e2e_ms=1, ratio=0.9).flagged is False   # both bounds inclusive
    assert Coverage(variant="v", layers_ms=1, e2e_ms=1, ratio=1.1).flagged is False


@pytest.mark.parametrize("ratio,basis,attrs,start,end", [
    (0.5, "cupti-gpu", {"gpu": {"idle_share": 0.3, "span_ms": 10.0}},
     "the GPU was idle 30% of each profiled run between kernels: launch-bound", "Σ layers counts GPU work only"),
    (0.5, "cupti-gpu", {"gpu": {"idle_share": 0.05, "span_ms": 10.0}},
     "GPU work is shorter than the end-to-end latency", "(input binding, synchronization)"),
    (1.5, "cupti-gpu", {"gpu": {"idle_share": 0.3, "span_ms": 10.0}},
     "GPU time in the profiled run exceeds", "(Σ counts overlap twice)"),
    # CPU nodes too small to explain the idle time (0.5 <= 0.25 * 0.3 * 10 = 0.75): launch-bound reason
    (0.5, "cupti-gpu", {"gpu": {"idle_share": 0.3, "span_ms": 10.0}, "cpu_nodes": {"ms": 0.5, "count": 1, "top": []}},
     "the GPU was idle 30% of each profiled run between kernels", "Σ layers counts GPU work only"),
    (1.5, "host-launch", {}, "host-side timing of asynchronous CUDA launches", "for GPU per-layer time)"),
    (0.5, "host-launch", {}, "host-side timing of asynchronous CUDA launches", "for GPU per-layer time)"),
    (0.5, "tensorrt-iprofiler", {}, "TensorRT's IProfiler times layers with CUDA events around each layer; Σ is below",
     "is not in any layer"),
    (1.5, "tensorrt-iprofiler", {}, "TensorRT's IProfiler times layers with CUDA events around each layer; event",
     "inflates small layers"),
    (0.5, "host", {}, "time outside kernels (framework overhead", "that no layer row shows"),
    (1.5, "host", {}, "the profiled run was slower than the latency run", "(profiler overhead or a busy machine)"),
    (0.5, "", {}, "time outside kernels (framework overhead", "that no layer row shows"),
])
def test_coverage_reason_names_the_cause(ratio, basis, attrs, start, end):
    r = coverage_reason(ratio, basis, attrs)
    assert r.startswith(start) and r.endswith(end), r


def test_coverage_reason_cpu_nodes_branch_needs_idle_span_and_cpu_time():
    cpu = {"ms": 2.0, "count": 2, "top": [("n1", 1.5), ("n2", 0.5)]}
    gpu = {"idle_share": 0.4, "span_ms": 10.0}
    r = coverage_reason(0.5, "cupti-gpu", {"gpu": gpu, "cpu_nodes": cpu})
    assert r.startswith("the GPU was idle 40% of each profiled run, waiting for 2 node(s) ONNX Runtime ran on its "
                        "CPU provider (2 ms host time per run: n1, n2) and the copies around them")
    # the boundary: CPU time must exceed a quarter of the idle time (0.25 * 0.4 * 10 = 1.0 ms)
    assert "waiting for" not in coverage_reason(0.5, "cupti-gpu", {"gpu": gpu, "cpu_nodes": {**cpu, "ms": 1.0}})
    assert "waiting for" in coverage_reason(0.5, "cupti-gpu", {"gpu": gpu, "cpu_nodes": {**cpu, "ms": 1.01}})
    # idle share must exceed 10 %, the span must be known, the ratio must be below the goal
    low = coverage_reason(0.5, "cupti-gpu", {"gpu": {**gpu, "idle_share": 0.1}, "cpu_nodes": cpu})
    assert low.startswith("GPU work is shorter")
    assert "waiting for" in coverage_reason(0.5, "cupti-gpu", {"gpu": {**gpu, "idle_share": 0.11}, "cpu_nodes": cpu})
    assert coverage_reason(0.5, "cupti-gpu", {"gpu": {"idle_share": 0.4}, "cpu_nodes": cpu}).startswith(
        "the GPU was idle 40% of each profiled run between kernels")
    assert coverage_reason(1.5, "cupti-gpu", {"gpu": gpu, "cpu_nodes": cpu}).startswith("GPU time in the profiled")
    assert coverage_reason(0.5, "cupti-gpu", {}).startswith("GPU work is shorter")  # no GPU facts at all
    assert coverage_reason(0.5, "cupti-gpu", {"gpu": None, "cpu_nodes": None}).startswith("GPU work is shorter")
    assert coverage_reason(0.5, "cupti-gpu", {"gpu": gpu, "cpu_nodes": {"ms": 2.0}}).startswith(
        "the GPU was idle 40% of each profiled run, waiting for 0 node(s)")


def test_coverage_reason_inside_and_at_the_bounds_is_empty():
    for ratio in (0.9, 1.0, 1.1):
        assert coverage_reason(ratio, "host", {}) == ""
    assert coverage_reason(0.95, "host", {}, goal=0.96).startswith("time outside kernels")
    assert coverage_reason(1.05, "host", {}, upper=1.04).startswith("the profiled run was slower")
    assert coverage_reason(float("nan"), "host", {}) == "no end-to-end time to compare with"


def test_cpu_node_facts_from_columns_rank_the_top_four():
    rows = [("g", "CUDA", "cupti-gpu", 5.0)] + [(f"c{i}", "CPU", "host", float(i)) for i in range(1, 7)]
    rows.append(("c6", "CPU", "host", 1.0))  # a second kernel of node c6: summed per node
    df = pd.DataFrame(rows, columns=["onnx_node", "provider", "time_basis", "time_ms"]).assign(
        variant="v", gpu_busy_ms=5.0, gpu_span_ms=40.0, gpu_idle_share=0.6)
    c = coverage(df, _lat("v", (40.0,) * 3))
    assert c.other_basis_ms == pytest.approx(22.0) and c.layers_ms == 5.0
    assert "waiting for 6 node(s)" in c.reason and "(22 ms host time per run: c6, c5, c4, c3)" in c.reason


# -------------------------------------------------------------------------------- ORT trace / rows
def _ev(name, ts, dur, op="Relu", tid=1, shape=None, provider="CPUExecutionProvider"):
    args = {"op_name": op, "provider": provider}
    if shape is not None:
        args["input_type_shape"] = shape
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "tid": tid, "args": args}


def test_parse_ort_trace_counts_kernels_of_timed_runs_only():
    ev = [{"cat": "Session", "name": "model_run", "ts": 1000, "dur": 300},
          {"cat": "Session", "name": "model_run", "ts": 0, "dur": 200},      # out of order: sorted by start
          {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5000},
          _ev("a", 10, 40),                                                  # in the warm-up run
          _ev("a", 1010, 30), _ev("a", 1100, 50, shape=[{"float": [2, 3]}, {"int64": [1]}]),
          _ev("b", 1250, 60),          # ends at 1310: past the run's end (1300), not counted
          _ev("c", 1300, 0),           # ends exactly at the run's end: counted
          _ev("d", 500, 10),           # between runs
          {"cat": "Node", "name": "a_fence_before", "ts": 1020, "dur": 5, "args": {}},
          {"cat": "Node", "name": "e_kernel_time", "ts": 1200, "dur": 7, "tid": 2, "args": {}}]
    stats, runs, run_ms = parse_ort_trace(ev, skip_runs=1)
    assert runs == 1 and run_ms == pytest.approx(0.3)
    assert set(stats) == {"a", "c", "e"}
    assert stats["a"] == {"dur_us": 80.0, "count": 2, "op": "Relu", "provider": "CPU", "shapes": ""}
    assert stats["c"]["dur_us"] == 0.0 and stats["c"]["count"] == 1
    assert stats["e"] == {"dur_us": 7.0, "count": 1, "op": "", "provider": "", "shapes": ""}
    all_runs, n, mean_ms = parse_ort_trace(ev)
    assert n == 2 and mean_ms == pytest.approx(0.25) and all_runs["a"]["count"] == 3
    with pytest.raises(RunError):
        parse_ort_trace(ev, skip_runs=2)
    with pytest.raises(RunError):
        parse_ort_trace([_ev("a", 0, 1)])


def test_parse_ort_trace_subgraph_parent_keeps_self_time_per_thread():
    ev = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
          _ev("loop", 100, 500, op="Loop", tid=1),
          _ev("body1", 150, 100, tid=1), _ev("body2", 300, 150, tid=1),
          _ev("other", 200, 100, tid=2),                  # another thread: not part of the loop
          _ev("late", 550, 100, tid=1),                   # ends after the loop: not nested
          _ev("scan", 700, 50, op="Scan", tid=1), _ev("in1", 700, 40, tid=1), _ev("in2", 705, 40, tid=1)]
    stats, _, _ = parse_ort_trace(ev)
    assert stats["loop"]["dur_us"] == 500 - 100 - 150
    assert stats["scan"]["dur_us"] == 0.0  # 50 - 80 (overlapping children): clipped at 0, never negative
    assert stats["body1"]["dur_us"] == 100 and stats["other"]["dur_us"] == 100


def test_shape_text():
    assert shape_text(None) == "" and shape_text([]) == ""
    assert shape_text([{"float": [1, 3]}, {"int64": []}]) == "float[1, 3] int64[]"


# ------------------------------------------------------------------------------- TensorRT parsers
def test_parse_trt_layer_info_lower_verbosity_and_json_text():
    recs = parse_trt_layer_info('{"Layers": ["conv1", "relu1"], "Bindings": ["x"]}')
    assert recs == [{"name": n, "layer_type": "", "tactic": "", "metadata": None, "in_precision": "",
                     "out_precision": "", "in_format": "", "out_format": ""} for n in ("conv1", "relu1")]
    assert parse_trt_layer_info({}) == [] and parse_trt_layer_info({"Bindings": []}) == []


def test_parse_trt_layer_info_fields_and_odd_entries():
    info = {"Layers": [
        {"Name": "mm", "LayerType": "Gemm", "TacticValue": "0x1f", "Metadata": "[ONNX Layer: mm]",
         "Inputs": [{"Name": "a", "Format/Datatype": "Row major linear Int8 format"}, "junk",
                    {"Name": "b", "DataType": "Half", "Format": "Row major"}],
         "Outputs": [{"Name": "y", "Datatype": "FP8", "Format": ""}]},
        {"Inputs": None, "Outputs": None},
        {"Name": "t", "TacticName": "tn", "TacticValue": "0x2",
         "Inputs": [{"Name": "a", "Format/Datatype": "Row major linear Int32, something"}],
         "Outputs": [{"Name": "z", "Format/Datatype": "Unknown dtype"}]},
    ]}
    a, b, c = parse_trt_layer_info(info)
    assert a["name"] == "mm" and a["layer_type"] == "Gemm" and a["tactic"] == "0x1f"
    assert a["metadata"] == "[ONNX Layer: mm]"
    assert a["in_precision"] == "int8, fp16" and a["out_precision"] == "fp8"
    assert a["in_format"] == "Row major linear Int8 format, Half Row major" and a["out_format"] == "FP8"
    assert b == {"name": "", "layer_type": "", "tactic": "", "metadata": None, "in_precision": "",
                 "out_precision": "", "in_format": "", "out_format": ""}
    assert c["tactic"] == "tn" and c["in_precision"] == "int32" and c["out_precision"] == ""


def test_trt_rows_join_by_name_and_profile_suffix():
    g = h.make_graph([h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Neg", ["r"], ["y"], name="neg")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    ix = GraphIndex.of(h.make_model(g))
    info = [{"name": "relu", "layer_type": "Activation", "tactic": "t1", "metadata": None, "in_precision": "fp32",
             "out_precision": "fp16", "in_format": "f1", "out_format": "f2"},
            {"name": "neg [profile 1]", "layer_type": "Unary", "tactic": "t2", "metadata": "[ONNX Layer: neg]",
             "in_precision": "fp16", "out_precision": "fp16", "in_format": "f3", "out_format": "f4"}]
    rows = trt_layer_rows({"relu [profile 2]": (4.0, 8), "neg": (2.0, 4), "mystery": (1.0, 4)}, 4, info, ix)
    by = {r["layer"]: r for r in rows}
    assert by["relu [profile 2]"] == {"layer": "relu [profile 2]", "layer_type": "Activation", "onnx_nodes": ["relu"],
                                      "onnx_node": "relu", "provider": "GPU", "time_ms": 1.0, "calls": 2.0,
                                      "mapped_by": "layer", "tactic": "t1", "in_precision": "fp32",
                                      "out_precision": "fp16", "in_format": "f1", "out_format": "f2"}
    assert by["neg"]["mapped_by"] == "metadata" and by["neg"]["onnx_nodes"] == ["neg"]
    assert by["neg"]["tactic"] == "t2" and by["neg"]["time_ms"] == 0.5 and by["neg"]["calls"] == 1.0
    assert by["mystery"]["onnx_node"] == UNMAPPED and by["mystery"]["mapped_by"] == "unmapped"
    assert by["mystery"]["layer_type"] == "" and by["mystery"]["tactic"] == ""
    no_ix = trt_layer_rows({"a + b": (2.0, 2)}, 2, [], None)[0]
    assert no_ix["onnx_nodes"] == ["a", "b"] and no_ix["onnx_node"] == "a" and no_ix["mapped_by"] == "fused"


# ----------------------------------------------------------------------------- real ORT session
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "sample_models" / "digits_cnn.onnx"
    dst = tmp_path_factory.mktemp("digits") / "digits_cnn.onnx"
    shutil.copy(src, dst)
    m = load(dst)
    return m, get_backend("onnxruntime").build(Variant.of(m), None, QUIET)


def test_profile_uses_its_iteration_counts_and_labels_the_table(digits):
    m, eng = digits
    feeds = synthetic_inputs(m)
    p = profile(eng, feeds, warmup=2, iterations=7, layer_iterations=3, layer_warmup=2)
    assert len(p.latency.times_ms) == 7 and p.latency.warmup == 2
    df = p.layers
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS and set(RUN_COLUMNS) <= set(df.columns)
    assert (df["iterations"] == 3).all() and df.attrs["iterations"] == 3
    assert (df["source"] == "onnxruntime-profiler").all() and (df["layout_optimizations"] == True).all()  # noqa: E712
    assert (df["variant"] == eng.variant.name).all() and (df["backend"] == "onnxruntime").all()
    assert (df["time_basis"] == "host").all() and df.attrs["time_basis"] == "host"
    assert df["share"].sum() == pytest.approx(1.0)
    assert df["share"].tolist() == pytest.approx((df["time_ms"] / df["time_ms"].sum()).tolist())
    assert df["time_ms"].is_monotonic_decreasing and (df["calls"] >= 1).all()
    assert df["profiled_run_ms"].nunique() == 1 and df["profiled_run_ms"].iloc[0] == df.attrs["profiled_run_ms"] > 0
    assert p.coverage.variant == eng.variant.name and p.coverage.layers_ms == pytest.approx(df["time_ms"].sum())
    assert p.coverage.e2e_ms == pytest.approx(float(np.mean(p.latency.times_ms)))


def test_profile_layers_options_and_refusals(digits):
    m, eng = digits
    feeds = synthetic_inputs(m)
    df = profile_layers(eng, feeds, iterations=2, warmup=0, layout_optimizations=False)
    assert (df["layout_optimizations"] == False).all() and df.attrs["layout_optimizations"] is False  # noqa: E712
    assert set(df["mapped_by"]) <= {"name", "fusion", "neighbour", "unmapped"}
    assert (df["onnx_node"] != UNMAPPED).all()
    for bad in ({"iterations": 0}, {"iterations": True}, {"iterations": 2.0}, {"warmup": -1}, {"warmup": False},
                {"warmup": 1.5}):
        with pytest.raises(UsageError):
            profile_layers(eng, feeds, **{"iterations": 2, "warmup": 0, **bad})
    with pytest.raises(UsageError):
        profile_layers(eng, feeds, timing="cuda")
    from workbench.errors import BackendUnavailable
    with pytest.raises(BackendUnavailable):
        profile_layers(eng, feeds, timing="gpu")  # a CPU session has no GPU timing
    host = profile_layers(eng, feeds, iterations=1, warmup=0, timing="host")
    assert len(host) and "cupti_unavailable" not in host.attrs
    with pytest.raises(RunError, match="missing input"):
        profile_layers(eng, {}, iterations=1, warmup=0)
    one = profile_layers(eng, feeds, iterations=np.int64(1), warmup=np.int64(0))
    assert (one["iterations"] == 1).all()


def test_layers_csv_joins_node_lists(digits, tmp_path):
    df = pd.DataFrame({"layer": ["a", "b", "c"], "onnx_nodes": [["n1", "n2"], ("n3",), "n4"], "time_ms": [1.0, 2.0, 3.0]})
    out = save_layers_csv(df, tmp_path / "l.csv")
    back = pd.read_csv(out)
    assert back["onnx_nodes"].tolist() == ["n1;n2", "n3", "n4"] and back["time_ms"].tolist() == [1.0, 2.0, 3.0]
    assert df["onnx_nodes"].tolist()[0] == ["n1", "n2"]  # the caller's frame is not changed
    assert list(back.columns) == ["layer", "onnx_nodes", "time_ms"]


# ------------------------------------------------------------------------- second round (survivors)
def test_format_text_with_only_a_type_or_only_a_format():
    info = {"Layers": [{"Name": "l", "Inputs": [{"Name": "a", "Format": "Row major linear"}],
                        "Outputs": [{"Name": "y", "Datatype": "Half"}, {"Name": "z", "DataType": "Int8"}]}]}
    rec = parse_trt_layer_info(info)[0]
    assert rec["in_format"] == "Row major linear" and rec["in_precision"] == ""
    assert rec["out_format"] == "Half, Int8" and rec["out_precision"] == "fp16, int8"


def test_trt_rows_prefer_the_exact_profile_record_and_its_metadata():
    g = h.make_graph([h.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"], name="dq"),
                      h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Neg", ["r"], ["y"], name="neg")],
                     "g", [h.make_tensor_value_info("xq", T.INT8, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])],
                     initializer=[h.make_tensor("s", T.FLOAT, [], [0.5]), h.make_tensor("z", T.INT8, [], [0])])
    ix = GraphIndex.of(h.make_model(g))
    base = {"layer_type": "", "in_precision": "", "out_precision": "", "in_format": "", "out_format": ""}
    info = [{**base, "name": "blob", "tactic": "t0", "metadata": None},
            {**base, "name": "blob [profile 1]", "tactic": "t1", "metadata": None},
            {**base, "name": "fused_blob", "tactic": "t2", "metadata": "[ONNX Layer: relu]\x1f[ONNX Layer: neg]"},
            {**base, "name": "qrelu", "tactic": "t3", "metadata": "[ONNX Layer: dq]\x1f[ONNX Layer: relu]"}]
    rows = trt_layer_rows({"blob [profile 1]": (1.0, 1), "blob": (1.0, 1), "fused_blob": (1.0, 1),
                           "qrelu": (1.0, 1)}, 1, info, ix)
    by = {r["layer"]: r for r in rows}
    assert by["blob [profile 1]"]["tactic"] == "t1" and by["blob"]["tactic"] == "t0"
    assert by["fused_blob"]["onnx_nodes"] == ["relu", "neg"] and by["fused_blob"]["mapped_by"] == "metadata"
    # a DQ fused into its consumer: the layer stands for the consumer (the anchor), not the first node
    assert by["qrelu"]["onnx_nodes"] == ["dq", "relu"] and by["qrelu"]["onnx_node"] == "relu"


def test_coverage_edge_cases():
    # no variant column at all; a sub-millisecond latency is still a ratio
    c = coverage(pd.DataFrame({"time_ms": [0.25, 0.2]}), _lat("v", (0.5, 0.5)))
    assert c.ratio == pytest.approx(0.9) and not c.flagged
    # a single-variant table is used whatever its variant is called
    c2 = coverage(pd.DataFrame({"variant": ["a", "a"], "time_ms": [4.0, 5.0]}), _lat("b"))
    assert c2.layers_ms == 9.0 and c2.variant == "b"
    # one-row CUPTI table read back from columns; a sub-millisecond GPU span still explains the idle time
    one = pd.DataFrame({"variant": ["v", "v"], "time_ms": [0.2, 0.5], "onnx_node": ["g", "c"],
                        "provider": ["CUDA", "CPU"], "time_basis": ["cupti-gpu", "host"], "gpu_busy_ms": [0.4, 0.4],
                        "gpu_span_ms": [0.8, 0.8], "gpu_idle_share": [0.5, 0.5]})
    c3 = coverage(one, _lat("v", (1.0,)))
    assert c3.gpu_busy_ms == 0.4 and "waiting for 1 node(s)" in c3.reason
    c4 = coverage(one.iloc[:1], _lat("v", (1.0,)))
    assert c4.gpu_busy_ms == 0.4 and c4.layers_ms == 0.2
    # a profiled_run_ms column without a value: no in-run ratio; one row with a value: that value
    nan = pd.DataFrame({"variant": ["v"], "time_ms": [1.0], "profiled_run_ms": [float("nan")]})
    assert coverage(nan, _lat("v")).profiled_run_ms is None
    assert coverage(nan.assign(profiled_run_ms=2.0), _lat("v")).in_run == 0.5


def test_profile_defaults_and_passed_options(digits, capsys):
    m, eng = digits
    feeds = synthetic_inputs(m)
    capsys.readouterr()
    p = profile(eng, feeds)
    assert len(p.latency.times_ms) == 100 and p.latency.warmup == 10 and p.latency.time_budget_s is None
    assert p.layers.attrs["iterations"] == 20 and (p.layers["iterations"] == 20).all()
    assert "profile" not in capsys.readouterr().err  # no progress bars unless asked
    p2 = profile(eng, feeds, iterations=5, time_budget_s=60.0, layer_iterations=2, progress=True)
    assert p2.latency.time_budget_s == 60.0 and len(p2.latency.times_ms) == 5
    err = capsys.readouterr().err
    assert f"profile {eng.variant.name}" in err and "latency" in err.lower()


def test_inserted_kernels_take_the_first_mapped_consumer_downstream():
    """Format test of the ORT mapping rule for kernels ORT inserted (layout reorders): walk the optimized graph
    downstream to the first consumer mapped to ONNX nodes (``mapped_by="neighbour"``), else ``<unmapped>``."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Neg", ["r"], ["y"], name="neg")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {n.name: n for n in [
        h.make_node("ReorderInput", ["tb"], ["ta"], name="ra"),     # ra -> rb -> rc -> (ra again, seen) and relu
        h.make_node("ReorderOutput", ["ta"], ["tc"], name="rb"),    # timed, mapped to nothing itself
        h.make_node("Transpose", ["tc"], ["tb"], name="rc"),        # not timed: absent from the stats
        h.make_node("Relu", ["tb"], ["r"], name="relu"),
        h.make_node("Neg", ["r"], ["y"], name="neg"),
        h.make_node("ReorderOutput", ["y"], ["yo"], name="tail"),  # its output feeds nothing
    ]}

    def st(op):
        return {"dur_us": 1000.0, "count": 1, "op": op, "provider": "CPU", "shapes": ""}

    stats = {"ra": st("ReorderInput"), "rb": st("ReorderOutput"), "relu": st("Relu"), "neg": st("Neg"), "tail": st("ReorderOutput"),
             "ghost": st("Copy")}  # ghost: not in the optimized graph either
    rows = {r["layer"]: r for r in ort_layer_rows(stats, 1, ix, optimized)}
    assert rows["relu"]["mapped_by"] == "name" and rows["relu"]["onnx_nodes"] == ["relu"]
    assert rows["ra"]["onnx_node"] == "relu" and rows["ra"]["mapped_by"] == "neighbour"
    assert rows["ra"]["onnx_nodes"] == [] and rows["rb"]["onnx_node"] == "relu" and rows["rb"]["mapped_by"] == "neighbour"
    assert rows["tail"]["onnx_node"] == UNMAPPED and rows["tail"]["mapped_by"] == "unmapped"
    assert rows["ghost"]["onnx_node"] == UNMAPPED and rows["ghost"]["mapped_by"] == "unmapped"
    assert rows["ra"]["time_ms"] == 1.0 and rows["ra"]["calls"] == 1.0


def test_ort_rows_per_run_times_and_the_naming_rules():
    """Format test of the ORT kernel -> node rules on two timed runs: a kernel named after a node, one with ORT's
    ``_token_N`` suffix, and an NCHWc kernel ``<tensor>_nchwc`` standing for the producer of ``<tensor>``."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], name="conv"), h.make_node("Relu", ["c"], ["r"], name="relu"),
                      h.make_node("Neg", ["r"], ["y"], name="neg")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 2, 2])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])])
    ix = GraphIndex.of(h.make_model(g))

    def st(op, dur, count, shapes=""):
        return {"dur_us": dur, "count": count, "op": op, "provider": "CPU", "shapes": shapes}

    stats = {"r_nchwc": st("Conv", 4000.0, 4, "float[1, 1, 2, 2]"), "neg": st("Neg", 1000.0, 2),
             "neg_token_3": st("Neg", 500.0, 2)}
    for optimized in ({}, {"r_nchwc": h.make_node("Conv", ["x", "w"], ["r_nchwc"], name="r_nchwc")}):
        rows = {r["layer"]: r for r in ort_layer_rows(stats, 2, ix, optimized)}
        assert rows["r_nchwc"] == {"layer": "r_nchwc", "layer_type": "Conv", "onnx_nodes": ["conv", "relu"],
                                   "onnx_node": "conv", "provider": "CPU", "time_ms": 2.0, "calls": 2.0,
                                   "mapped_by": "fusion", "shapes": "float[1, 1, 2, 2]"}
        assert rows["neg"]["mapped_by"] == "name" and rows["neg"]["time_ms"] == 0.5 and rows["neg"]["calls"] == 1.0
        assert rows["neg_token_3"]["onnx_nodes"] == ["neg"] and rows["neg_token_3"]["mapped_by"] == "fusion"
        assert rows["neg_token_3"]["time_ms"] == 0.25


# ------------------------------------------------------------- third round: the ORT profiling path (survivors)
RESIDUAL_NODES = ["conv1", "relu1", "conv2", "add", "relu2", "gap", "flat", "fc"]


def _residual_model(path):
    """x -> conv1 -> relu1 -> conv2 -> add(conv2, relu1) -> relu2 -> gap -> flat -> fc -> y (8 named nodes).

    ORT CPU fuses conv1+relu1 and conv2+add+relu2 into one kernel each (FusedConv with its Z input, or, with the
    NCHWc layout transformer on an AVX2/AVX-512 CPU, an NCHWc Conv with the residual sum fused in), runs Conv and
    GlobalAveragePool in the blocked layout and inserts a ReorderOutput before Flatten."""
    import onnx
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)

    def w(name, shape):
        return nh.from_array((0.1 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             h.make_node("Add", ["c2", "r1"], ["s"], name="add"),
             h.make_node("Relu", ["s"], ["r2"], name="relu2"),
             h.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             h.make_node("Flatten", ["g"], ["f"], name="flat"),
             h.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    g = h.make_graph(nodes, "residual", [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4])],
                     initializer=[w("w1", [16, 8, 3, 3]), w("b1", [16]), w("w2", [16, 16, 3, 3]), w("b2", [16]),
                                  w("wf", [4, 16]), w("bf", [4])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    d = tmp_path_factory.mktemp("residual")
    m = load(_residual_model(d / "residual.onnx"))
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)}
    return m, get_backend("onnxruntime").build(Variant.of(m), None, QUIET), feeds, d


def _ort_optimized_graph(model_path, out_path):
    """The graph ORT itself makes of the model (ORT_ENABLE_ALL, CPU): the test's own oracle for which kernels
    ORT inserts and what consumes them."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(out_path)
    so.log_severity_level = 4
    ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(out_path)).graph


def test_each_onnx_node_is_timed_in_exactly_one_row_and_inserted_reorders_take_their_consumer(residual):
    """A kernel ORT inserts (ReorderOutput writing an NCHWc kernel's result back as the original tensor) covers no
    ONNX node: before the fix it claimed gap (another kernel's node) and walked back over add/relu2 (fused into
    the conv2 kernel), so `groupby("onnx_node")` and `spread` counted those nodes twice."""
    m, eng, feeds, d = residual
    opt = _ort_optimized_graph(d / "residual.onnx", d / "ort_opt.onnx")
    nchwc = any(n.name.endswith("_nchwc") for n in opt.node)  # NCHWc needs an AVX2/AVX-512 x86 CPU
    consumers = {t: [n.name for n in opt.node if t in n.input] for n in opt.node for t in n.output}
    reorders = {n.name: [c for t in n.output for c in consumers[t] if c in RESIDUAL_NODES][:1]
                for n in opt.node if n.op_type == "ReorderOutput"}
    for lo in (True, False):
        df = profile_layers(eng, feeds, iterations=2, warmup=1, layout_optimizations=lo)
        counts = {}
        for nodes in df["onnx_nodes"]:
            for n in nodes:
                counts[n] = counts.get(n, 0) + 1
        assert counts == dict.fromkeys(RESIDUAL_NODES, 1), (lo, df[["layer", "onnx_nodes"]])
        by_node = {r.onnx_node: r for r in df.itertuples() if r.onnx_nodes}
        assert by_node["conv1"].onnx_nodes == ["conv1", "relu1"] and by_node["conv1"].mapped_by == "fusion"
        assert by_node["conv2"].onnx_nodes == ["conv2", "add", "relu2"] and by_node["conv2"].mapped_by == "fusion"
        assert by_node["fc"].onnx_nodes == ["fc"] and by_node["flat"].onnx_nodes == ["flat"]
        assert (df["calls"] == 1.0).all() and (df["precision"] == "fp32").all()
        assert df.attrs["source"] == "onnxruntime-profiler" and df.attrs["time_basis"] == "host"
        assert df.attrs["layout_optimizations"] is lo and df.attrs["iterations"] == 2
        inserted = df[df["onnx_nodes"].map(len) == 0]
        if lo and nchwc:
            assert df["layer"].str.endswith("_nchwc").any()
            assert by_node["conv2"].layer == "c2_nchwc" and by_node["gap"].layer == "g_nchwc"
            assert len(inserted) and set(inserted["layer"]) <= set(reorders)
            for r in inserted.itertuples():
                assert (r.mapped_by, r.onnx_node) == ("neighbour", reorders[r.layer][0])
        if not lo:  # kernels keep the names of the nodes they are built around
            assert not df["layer"].str.endswith("_nchwc").any() and inserted.empty
            assert by_node["conv2"].layer == "conv2" and by_node["gap"].mapped_by == "name"


def test_the_profiling_session_uses_the_engines_threads_and_its_temp_folder(residual, tmp_path, monkeypatch):
    """`ort_profiling_session` (also used by the CUPTI profiler): the engine's intra-op thread count, profiling on,
    the trace and the optimized model written into the given folder, never the working directory."""
    from workbench.measure.layers import named_index, ort_profiling_session

    m, eng, feeds, d = residual
    monkeypatch.chdir(tmp_path)
    for threads in (0, 1, 2):
        e = eng if threads == 0 else get_backend("onnxruntime").build(Variant.of(m), None,
                                                                        BuildOptions(progress=False, threads=threads))
        tmp = tmp_path / f"t{threads}"
        tmp.mkdir()
        proto, _ = named_index(e)
        sess = ort_profiling_session(e, proto, tmp, True)
        so = sess.get_session_options()
        assert so.intra_op_num_threads == threads and so.enable_profiling
        assert sess.get_providers() == ["CPUExecutionProvider"]
        sess.run(None, feeds)
        trace = sess.end_profiling()
        assert os.path.dirname(trace) == str(tmp) and os.path.isfile(trace)
        assert (tmp / "optimized.onnx").is_file()
    assert sorted(os.listdir(tmp_path)) == ["t0", "t1", "t2"]  # nothing in the working directory


def test_the_layout_switch_reaches_the_profiling_session(residual, tmp_path):
    """layout_optimizations=True leaves ORT's NCHWc transformer on (as in the engine), False disables it."""
    import onnx

    from workbench.measure.layers import named_index, ort_profiling_session

    m, eng, feeds, d = residual
    if not any(n.name.endswith("_nchwc") for n in _ort_optimized_graph(d / "residual.onnx", tmp_path / "o.onnx").node):
        pytest.skip("ONNX Runtime applies no NCHWc layout on this CPU (needs AVX2 or AVX-512)")
    proto, _ = named_index(eng)
    for lo in (True, False):
        tmp = tmp_path / str(lo)
        tmp.mkdir()
        ort_profiling_session(eng, proto, tmp, lo)
        names = [n.name for n in onnx.load(str(tmp / "optimized.onnx")).graph.node]
        assert any(n.endswith("_nchwc") for n in names) is lo, names


def test_profile_layers_defaults_on_direct_calls(residual, monkeypatch):
    from workbench.measure.layers import profile_layers_ort

    m, eng, feeds, d = residual
    bar = _Bar(monkeypatch)
    for df in (profile_layers(eng, feeds), profile_layers_ort(eng, feeds)):
        assert df.attrs["iterations"] == 20 and (df["iterations"] == 20).all()
        assert df.attrs["layout_optimizations"] is True and df.attrs["time_basis"] == "host"
    assert bar.take() == ""  # no progress bar unless asked


_Bar = DrawnBars


def test_profile_progress_bar_counts_warmup_and_timed_runs_then_disappears(residual, monkeypatch):
    import re

    m, eng, feeds, d = residual
    bar = _Bar(monkeypatch)
    df = profile_layers(eng, feeds, iterations=4, warmup=2, progress=True)
    assert df.attrs["iterations"] == 4
    text = bar.take()
    frames = [f for f in text.split("\r") if f.strip()]
    assert frames and all(f.startswith(f"profile {eng.variant.name}:") for f in frames)
    counts = [int(c) for c in re.findall(r"(\d+)/6 \[", text)]
    assert counts == list(range(7)) and "it/s" in text
    # leave=False: the bar is erased at the end (a blank frame), never left behind with a newline
    assert text.endswith("\r") and text.split("\r")[-2].strip() == "" and "\n" not in text


def test_cpu_session_timing_choices_say_what_applies(residual):
    from workbench.errors import BackendUnavailable

    m, eng, feeds, d = residual
    auto = profile_layers(eng, feeds, iterations=1, warmup=0, timing="auto")
    assert "cupti_unavailable" not in auto.attrs and auto.attrs["source"] == "onnxruntime-profiler"
    with pytest.raises(BackendUnavailable, match="this session runs on the CPU"):
        profile_layers(eng, feeds, iterations=1, warmup=0, timing="gpu")


def test_layer_frame_zero_total_and_ties_keep_the_profilers_order():
    from workbench.measure.layers import layer_frame

    zero = layer_frame([{"layer": "a", "time_ms": 0.0}, {"layer": "b", "time_ms": 0.0}], [])
    assert zero["share"].tolist() == [0.0, 0.0]  # all kernels under ORT's 1 µs resolution: no share, not NaN
    assert layer_frame([], ["shapes"])["share"].tolist() == []
    rows = [{"layer": f"k{i}", "time_ms": float(i % 3)} for i in range(60)]
    df = layer_frame(rows, [])
    expect = [r["layer"] for r in sorted(rows, key=lambda r: -r["time_ms"])]  # Python's sort is stable
    assert df["layer"].tolist() == expect
    assert df["share"].sum() == pytest.approx(1.0) and df["share"].iloc[0] == pytest.approx(2.0 / 60.0)


def test_parse_ort_trace_boundaries_and_events_without_args():
    ev = [{"cat": "Session", "name": "model_run", "ts": 100, "dur": 100},
          _ev("first", 100, 10),                                     # starts exactly when the run starts
          {"cat": "Node", "name": "bare_kernel_time", "ts": 120, "dur": 5},  # no args at all
          _ev("loop", 130, 50, op="Loop"), _ev("body", 140, 40)]     # body ends exactly when the loop ends
    stats, runs, run_ms = parse_ort_trace(ev)
    assert runs == 1 and run_ms == pytest.approx(0.1)
    assert stats["first"]["dur_us"] == 10.0 and stats["first"]["count"] == 1
    assert stats["bare"] == {"dur_us": 5.0, "count": 1, "op": "", "provider": "", "shapes": ""}
    assert stats["loop"]["dur_us"] == 10.0 and stats["body"]["dur_us"] == 40.0


# --------------------------------------------------------- GPU: the CUDA-provider branch of profile_layers_ort
def _cuda_reason() -> str | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime-gpu (CUDA execution provider) not installed"
    from workbench.device import cuda_device_info

    info = cuda_device_info(0)
    return f"no NVIDIA GPU: {info['error']}" if "error" in info else None


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_reason() is not None, reason=str(_cuda_reason()))
def test_cuda_session_timing_choices(residual, monkeypatch):
    """On ORT's CUDA provider: timing="host" is ORT's profiler, CUDA rows on the "host-launch" basis (launch cost
    on the CPU), CPU-provider rows on "host", CUPTI never consulted; timing="auto" is CUPTI GPU time with the
    caller's iterations and progress bar when cupti-python works, else the host profiler with the reason in
    attrs; timing="gpu" without CUPTI is refused with that reason."""
    from workbench.errors import BackendUnavailable
    from workbench.measure.cupti import cupti_unavailable

    m, _, feeds, d = residual
    eng = get_backend("onnxruntime-cuda").build(Variant.of(m), None, QUIET)
    try:
        assert eng.on_cuda
        host = profile_layers(eng, feeds, iterations=3, warmup=1, timing="host")
        assert host.attrs["source"] == "onnxruntime-profiler" and "cupti_unavailable" not in host.attrs
        assert host.attrs["time_basis"] == "host-launch" and host.attrs["iterations"] == 3
        assert (host["provider"] != "CPU").any()
        assert host["time_basis"].tolist() == ["host" if p == "CPU" else "host-launch" for p in host["provider"]]
        reason = cupti_unavailable()
        bar = _Bar(monkeypatch)
        auto = profile_layers(eng, feeds, iterations=3, warmup=1, progress=True)
        text = bar.take()
        if reason is None:
            assert auto.attrs["source"] == "cupti" and auto.attrs["iterations"] == 3
            assert f"profile {eng.variant.name} (CUPTI)" in text
        else:
            assert auto.attrs["source"] == "onnxruntime-profiler" and auto.attrs["cupti_unavailable"] == reason
            assert auto.attrs["time_basis"] == "host-launch" and f"profile {eng.variant.name}:" in text
            with pytest.raises(BackendUnavailable, match="needs CUPTI"):
                profile_layers(eng, feeds, iterations=1, warmup=0, timing="gpu")
    finally:
        eng.close()


# ------------------------------------------------ ORT kernel -> node rules on optimized graphs as ORT writes them
def _st(op, dur=1000.0, count=1):
    return {"dur_us": dur, "count": count, "op": op, "provider": "CPU", "shapes": ""}


def test_ort_rows_do_not_depend_on_the_order_kernels_are_reported():
    """Format test on the optimized graph ORT 1.32 (CPU, AVX-512) writes for conv1 -> relu1 -> conv2 -> add(+relu1) -> relu2 (the
    graph's output) with the NCHWc transformer: two NCHWc convs (the second with the residual sum fused in: a 4th
    input) and a ReorderOutput that writes the block's result back as r2. The ReorderOutput computes no ONNX node,
    in whatever order the profiler reports the kernels."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"), h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                      h.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"), h.make_node("Add", ["c2", "r1"], ["s"], name="add"),
                      h.make_node("Relu", ["s"], ["r2"], name="relu2")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 4, 4])], [h.make_tensor_value_info("r2", T.FLOAT, None)],
                     initializer=[h.make_tensor("w1", T.FLOAT, [8, 8, 1, 1], [0.0] * 64),
                                  h.make_tensor("w2", T.FLOAT, [8, 8, 1, 1], [0.0] * 64)])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {n.name: n for n in [
        h.make_node("Conv", ["x", "reorder", "b1"], ["reorder_token_0"], name="r1_nchwc"),
        h.make_node("Conv", ["reorder_token_0", "reorder_token_1", "b2", "reorder_token_0"], ["reorder_token_2"],
                    name="c2_nchwc"),
        h.make_node("ReorderOutput", ["reorder_token_2"], ["r2"], name="ReorderOutput")]}
    stats = {"r1_nchwc": _st("Conv"), "c2_nchwc": _st("Conv"), "ReorderOutput": _st("ReorderOutput")}
    for order in (list(stats), list(reversed(stats))):
        rows = {r["layer"]: r for r in ort_layer_rows({k: stats[k] for k in order}, 1, ix, optimized)}
        assert rows["r1_nchwc"]["onnx_nodes"] == ["conv1", "relu1"] and rows["r1_nchwc"]["onnx_node"] == "conv1"
        assert rows["c2_nchwc"]["onnx_nodes"] == ["conv2", "add", "relu2"] and rows["c2_nchwc"]["onnx_node"] == "conv2"
        # nothing consumes r2 in the optimized graph (a graph output): no neighbour either
        assert rows["ReorderOutput"]["onnx_nodes"] == [] and rows["ReorderOutput"]["onnx_node"] == UNMAPPED
        assert rows["ReorderOutput"]["mapped_by"] == "unmapped" and [r["layer"] for r in rows.values()] == order


def test_a_kernel_named_exactly_after_a_node_stands_for_that_node():
    """A model's own node may carry a name that looks like ORT's generated suffix (`mm_token_7`, e.g. from a model
    saved by an ORT tool): the kernel of that exact name is that node, not `mm`."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["a"], name="mm"), h.make_node("Relu", ["a"], ["y"], name="mm_token_7")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 2])], [h.make_tensor_value_info("y", T.FLOAT, [2, 2])],
                     initializer=[h.make_tensor("w", T.FLOAT, [2, 2], [1.0] * 4)])
    ix = GraphIndex.of(h.make_model(g))
    rows = {r["layer"]: r for r in ort_layer_rows({"mm": _st("MatMul"), "mm_token_7": _st("Relu")}, 1, ix, {})}
    assert rows["mm_token_7"]["onnx_nodes"] == ["mm_token_7"] and rows["mm_token_7"]["mapped_by"] == "name"
    assert rows["mm"]["onnx_nodes"] == ["mm"] and rows["mm"]["mapped_by"] == "name"


def test_an_nchwc_kernel_named_after_a_tensor_ort_made_maps_through_its_optimized_node():
    """NCHWc kernels are named after their output tensor; when that tensor is one ORT itself renamed (not in the
    model), the kernel's own node in the optimized graph says what it computes."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], name="conv"), h.make_node("Relu", ["c"], ["y"], name="relu")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 4, 4])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[h.make_tensor("w", T.FLOAT, [8, 8, 1, 1], [0.0] * 64)])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {n.name: n for n in [h.make_node("Conv", ["x", "w"], ["c"], name="reorder_token_3_nchwc"),
                                     h.make_node("Relu", ["c"], ["y"], name="relu")]}
    rows = {r["layer"]: r for r in ort_layer_rows({"reorder_token_3_nchwc": _st("Conv"), "relu": _st("Relu")}, 1, ix,
                                                  optimized)}
    k = rows["reorder_token_3_nchwc"]
    assert (k["onnx_nodes"], k["onnx_node"], k["mapped_by"]) == (["conv"], "conv", "fusion")
    assert rows["relu"]["onnx_nodes"] == ["relu"]


def test_a_qlinear_kernel_named_after_its_conv_covers_the_dq_and_q_around_it():
    """ORT's QDQ transformer turns DequantizeLinear -> Conv -> QuantizeLinear into one QLinearConv kernel named after
    the Conv, reading the int8 input and writing the int8 output: it computes all three nodes."""
    from workbench.measure.layers import ort_layer_rows

    s = [h.make_tensor("xs", T.FLOAT, [], [0.1]), h.make_tensor("xz", T.INT8, [], [0]),
         h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])]
    g = h.make_graph([h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq"),
                      h.make_node("Conv", ["xd", "w"], ["c"], name="conv"),
                      h.make_node("QuantizeLinear", ["c", "xs", "xz"], ["yq"], name="q")], "g",
                     [h.make_tensor_value_info("xq", T.INT8, [1, 1, 2, 2])], [h.make_tensor_value_info("yq", T.INT8, None)],
                     initializer=s)
    ix = GraphIndex.of(h.make_model(g))
    optimized = {"conv": h.make_node("QLinearConv", ["xq", "xs", "xz", "wq", "ws", "wz", "xs", "xz"], ["yq"], name="conv")}
    row = ort_layer_rows({"conv": _st("QLinearConv")}, 1, ix, optimized)[0]
    assert row["onnx_nodes"] == ["dq", "conv", "q"] and row["onnx_node"] == "conv" and row["mapped_by"] == "fusion"


def test_a_fused_kernel_reading_a_renamed_tensor_stops_at_its_core_op():
    """A FusedConv named after its conv reads a tensor ORT renamed (the output of a copy or cast it inserted), so the
    tensors it reads do not stop the walk back: it covers conv2 and the relu fused after it, down to its core Conv,
    and not relu1, which the conv1 kernel computes."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"), h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                      h.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"), h.make_node("Relu", ["c2"], ["r2"], name="relu2")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 2, 2])], [h.make_tensor_value_info("r2", T.FLOAT, None)],
                     initializer=[h.make_tensor("w1", T.FLOAT, [1, 1, 1, 1], [1.0]),
                                  h.make_tensor("w2", T.FLOAT, [1, 1, 1, 1], [1.0])])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {n.name: n for n in [h.make_node("FusedConv", ["x", "w1"], ["r1"], name="conv1"),
                                     h.make_node("MemcpyToHost", ["r1"], ["r1_token_4"], name="Memcpy_token_5"),
                                     h.make_node("FusedConv", ["r1_token_4", "w2"], ["r2"], name="conv2")]}
    stats = {"conv1": _st("FusedConv"), "Memcpy_token_5": _st("MemcpyToHost"), "conv2": _st("FusedConv")}
    rows = {r["layer"]: r for r in ort_layer_rows(stats, 1, ix, optimized)}
    assert rows["conv1"]["onnx_nodes"] == ["conv1", "relu1"] and rows["conv2"]["onnx_nodes"] == ["conv2", "relu2"]
    assert rows["Memcpy_token_5"]["onnx_nodes"] == [] and rows["Memcpy_token_5"]["onnx_node"] == "conv2"
    assert rows["Memcpy_token_5"]["mapped_by"] == "neighbour"


def test_quantized_kernels_cover_the_dequantize_of_their_input():
    """ORT fuses DequantizeLinear -> MatMul into MatMulIntegerToFloat named after the MatMul (it reads the int8
    tensor); a DequantizeLinear shared by two MatMuls is computed inside both kernels (ORT gives each node unit its
    own DQ), so both rows list it."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
                      h.make_node("MatMul", ["xd", "w"], ["y1"], name="mm1"),
                      h.make_node("MatMul", ["xd", "w"], ["y2"], name="mm2")], "g",
                     [h.make_tensor_value_info("xq", T.INT8, [2, 2])],
                     [h.make_tensor_value_info("y1", T.FLOAT, None), h.make_tensor_value_info("y2", T.FLOAT, None)],
                     initializer=[h.make_tensor("s", T.FLOAT, [], [0.5]), h.make_tensor("z", T.INT8, [], [0]),
                                  h.make_tensor("w", T.FLOAT, [2, 2], [1.0] * 4)])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {f"mm{i}": h.make_node("MatMulIntegerToFloat", ["xq", "wq", "s", "ws", "z"], [f"y{i}"], name=f"mm{i}")
                 for i in (1, 2)}
    rows = {r["layer"]: r for r in ort_layer_rows({"mm1": _st("MatMulIntegerToFloat"), "mm2": _st("MatMulIntegerToFloat")},
                                                  1, ix, optimized)}
    for i in (1, 2):
        r = rows[f"mm{i}"]
        assert (r["onnx_nodes"], r["onnx_node"], r["mapped_by"]) == (["dq", f"mm{i}"], f"mm{i}", "fusion")


def test_a_kernel_with_a_generated_name_stops_at_nodes_another_kernel_fused():
    """A fused kernel ORT gives a generated name (no node of that name) covers, walking back from its output, only
    nodes no other kernel computes: here mul and sig, not relu1, which the conv1 FusedConv computes."""
    from workbench.measure.layers import ort_layer_rows

    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c1"], name="conv1"), h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                      h.make_node("Mul", ["r1", "r1"], ["m"], name="mul"), h.make_node("Sigmoid", ["m"], ["y"], name="sig")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 2, 2])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])])
    ix = GraphIndex.of(h.make_model(g))
    optimized = {n.name: n for n in [h.make_node("FusedConv", ["x", "w"], ["r1"], name="conv1"),
                                     h.make_node("MemcpyToHost", ["r1"], ["r1_token_4"], name="Memcpy_token_5"),
                                     h.make_node("MulSigmoid", ["r1_token_4"], ["y"], name="MulSigmoidFusion_token_6")]}
    stats = {"conv1": _st("FusedConv"), "Memcpy_token_5": _st("MemcpyToHost"), "MulSigmoidFusion_token_6": _st("MulSigmoid")}
    rows = {r["layer"]: r for r in ort_layer_rows(stats, 1, ix, optimized)}
    assert rows["conv1"]["onnx_nodes"] == ["conv1", "relu1"]
    fused = rows["MulSigmoidFusion_token_6"]
    assert (fused["onnx_nodes"], fused["onnx_node"], fused["mapped_by"]) == (["mul", "sig"], "mul", "fusion")
    assert rows["Memcpy_token_5"]["onnx_node"] == "mul" and rows["Memcpy_token_5"]["mapped_by"] == "neighbour"


# --------------------------------- which profiler a CUDA engine gets (CPU-side, with fakes for the CUDA parts only)
def _cuda_flagged(eng):
    """FAKE, clearly: the real CPU engine, reporting ``on_cuda = True`` as an engine on ORT's CUDA provider does.
    It stands in only for the CUDA provider, so the choice between CUPTI and ORT's profiler (documented in
    profile_layers_ort) is tested here; the real CUDA run is tests/test_mut_layers.py::test_cuda_session_timing_choices
    (-m gpu)."""
    import copy

    fake = copy.copy(eng)
    fake.__class__ = type("CudaFlaggedOrtEngine", (type(eng),), {"on_cuda": True})
    return fake


def test_cuda_engine_gets_cupti_when_it_works_with_the_callers_options(residual, monkeypatch):
    """timing="auto" on a CUDA engine where CUPTI works: the CUPTI profiler (FAKE here: a recorder standing in for
    profile_layers_ort_cupti, which needs a GPU) gets this engine, these feeds and every option as given; its table
    is the result. timing="host" forces ORT's own profiler and never asks CUPTI."""
    import workbench.measure.cupti as C

    m, eng, feeds, d = residual
    fake = _cuda_flagged(eng)
    calls, table = [], pd.DataFrame({"layer": ["k"], "time_ms": [1.0]})
    monkeypatch.setattr(C, "cupti_unavailable", lambda: None)
    monkeypatch.setattr(C, "profile_layers_ort_cupti", lambda *a, **k: calls.append((a, k)) or table)
    out = profile_layers(fake, feeds, iterations=5, warmup=1, progress=True, layout_optimizations=False)
    assert out is table
    assert len(calls) == 1 and calls[0][0][0] is fake and calls[0][0][1] is feeds
    assert calls[0][1] == {"iterations": 5, "warmup": 1, "progress": True, "layout_optimizations": False}
    gpu = profile_layers(fake, feeds, iterations=2, warmup=0, timing="gpu")
    assert gpu is table and calls[1][1] == {"iterations": 2, "warmup": 0, "progress": False,
                                              "layout_optimizations": True}
    host = profile_layers(fake, feeds, iterations=1, warmup=0, timing="host")
    assert len(calls) == 2 and host.attrs["source"] == "onnxruntime-profiler"
    assert "cupti_unavailable" not in host.attrs


def test_cuda_engine_without_cupti_falls_back_and_says_why(residual, monkeypatch):
    """timing="auto" on a CUDA engine without CUPTI: ORT's profiler, with the reason in attrs["cupti_unavailable"];
    timing="gpu" is refused with that reason (the CUPTI profiler, FAKE here, is never called)."""
    import workbench.measure.cupti as C
    from workbench.errors import BackendUnavailable

    m, eng, feeds, d = residual
    fake = _cuda_flagged(eng)
    reason = "cupti-python not installed (test)"
    calls = []
    monkeypatch.setattr(C, "cupti_unavailable", lambda: reason)
    monkeypatch.setattr(C, "profile_layers_ort_cupti", lambda *a, **k: calls.append(a))
    auto = profile_layers(fake, feeds, iterations=2, warmup=0)
    assert auto.attrs["cupti_unavailable"] == reason and auto.attrs["source"] == "onnxruntime-profiler"
    assert (auto["iterations"] == 2).all() and not calls
    with pytest.raises(BackendUnavailable, match=r"GPU per-layer timing needs CUPTI: cupti-python not installed \(test\)"):
        profile_layers(fake, feeds, iterations=1, warmup=0, timing="gpu")
    assert not calls


def test_progress_bars_count_the_warmup_runs_by_default_and_as_given(residual, monkeypatch):
    """The profiled run's bar counts warm-up + timed runs: 3 + 20 by default (profile_layers, profile_layers_ort and
    profile's per-layer run), and profile's layer_warmup / layer_iterations as given."""
    import re

    from workbench.measure.layers import profile_layers_ort

    m, eng, feeds, d = residual
    bar = _Bar(monkeypatch)

    def totals(text):
        frames = [f for f in text.split("\r") if f.startswith(f"profile {eng.variant.name}:")]
        return {int(t) for f in frames for t in re.findall(r"\d+/(\d+) \[", f)}

    profile_layers(eng, feeds, progress=True)
    assert totals(bar.take()) == {23}
    profile_layers_ort(eng, feeds, progress=True)
    assert totals(bar.take()) == {23}
    profile(eng, feeds, warmup=0, iterations=2, progress=True)
    assert totals(bar.take()) == {23}
    profile(eng, feeds, warmup=0, iterations=2, layer_iterations=3, layer_warmup=2, progress=True)
    assert totals(bar.take()) == {5}
