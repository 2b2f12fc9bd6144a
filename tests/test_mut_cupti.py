"""The pure logic of workbench.measure.cupti on CPU: clock alignment, attribution of device records to ORT
nodes, the GPU timeline, per-layer rows and recordings.

Real inputs: the CUPTI recording of digits_cnn fp32 batch 32 made on a lent NVIDIA H200
(``tests/data/cupti_h200_digits_cnn_fp32_b32.json.gz``: raw kernel/runtime/driver records, ORT's profiler
trace, clock markers) and the bundled sample model it was recorded from. Expected values come from a
brute-force re-derivation in this file (every record against every node, no searchsorted, no caching),
from numpy on the raw records, or by hand on small hand-made traces in the formats ORT and CUPTI write.

``FakeCupti`` below stands in only for the cupti-python module object (its ``ActivityKind`` enum and
``get_timestamp``): the functions that talk to CUPTI itself (``ActivityTrace``, ``profile_layers_ort_cupti``)
need a GPU and are tested by tests/test_gpu_cupti.py -m gpu.
"""
from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import workbench as wb
from workbench.errors import RunError, WorkbenchError
from workbench.measure import cupti as C

DATA = Path(__file__).resolve().parent / "data"
DIGITS_REC = DATA / "cupti_h200_digits_cnn_fp32_b32.json.gz"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


@pytest.fixture()
def digits():
    return C.load_recording(DIGITS_REC)


def _median_offset(markers, clock):
    return int(np.median([m["cupti_ns"] - m[clock] for m in markers]))


def _brute_force(rec):
    """Attribution re-derived the slow way: every device record, its launch (runtime over driver), every node."""
    events = rec["ort_events"]
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    runs = runs[rec["skip_runs"]:]
    nodes = [(e["name"][:-12], e["ts"], e["ts"] + e["dur"]) for e in events
             if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
             and e["ts"] >= runs[0][0] and e["ts"] + e["dur"] <= runs[-1][1]]
    off = _median_offset(rec["markers"], "time_ns")
    c0 = rec["ort_start_ns"] + off
    api = {}
    for r in rec["records"]:
        if r["kind"] == "runtime":
            api[r["correlation_id"]] = r
    for r in rec["records"]:
        if r["kind"] == "driver":
            api.setdefault(r["correlation_id"], r)
    per_node = {}
    per_run = [[] for _ in runs]
    for r in rec["records"]:
        if r["kind"] not in ("kernel", "memcpy", "memset"):
            continue
        t = (api[r["correlation_id"]]["start"] - c0) / 1000.0
        containing = [n for n in nodes if n[1] <= t <= n[2]]
        owner = max(containing, key=lambda n: n[1])[0]  # innermost = latest start
        e = per_node.setdefault(owner, {"gpu_ns": 0, "records": 0, "kernels": Counter()})
        e["gpu_ns"] += r["end"] - r["start"]
        e["records"] += 1
        e["kernels"][r["name"]] += 1
        k = [i for i, (s, e_) in enumerate(runs) if s <= t <= e_]
        per_run[k[0]].append((r["start"], r["end"]))
    host = Counter()
    calls = Counter()
    for name, s, e in nodes:
        host[name] += e - s
        calls[name] += 1
    return per_node, per_run, runs, host, calls, off


def _union(iv):
    """Union length of integer intervals by an independent sweep: sorted starts, running maximum of ends."""
    a = np.array(sorted(iv), dtype=np.int64)
    ends = np.maximum.accumulate(a[:, 1])
    new = np.r_[True, a[1:, 0] > ends[:-1]]  # a new block starts after every earlier end
    blocks = np.cumsum(new) - 1
    lo = np.array([a[blocks == b, 0].min() for b in range(blocks.max() + 1)])
    hi = np.array([ends[blocks == b].max() for b in range(blocks.max() + 1)])
    return int((hi - lo).sum())


# ---------------------------------------------------------------------------------- real recording
def test_digits_recording_attribution_matches_a_brute_force_join(digits):
    att = C.attribute_recording(digits)
    per_node, per_run, runs, host, calls, off = _brute_force(digits)
    assert att["runs"] == len(runs) == digits["iterations"] == 10
    assert att["alignment"]["clock"] == "time_ns" and att["alignment"]["offset_ns"] == off
    assert set(att["nodes"]) == set(host)
    for name, n in att["nodes"].items():
        exp = per_node.get(name, {"gpu_ns": 0, "records": 0, "kernels": Counter()})
        assert (n["gpu_ns"], n["records"], dict(n["kernels"])) == (exp["gpu_ns"], exp["records"], dict(exp["kernels"])), name
        assert n["host_us"] == pytest.approx(host[name]) and n["host_calls"] == calls[name] == 10
        assert n["provider"] == "CUDA" and n["op"]
    assert att["copy"] == {} and att["unattributed"]["records"] == 0
    assert att["counts"] == {"in_nodes": 180}
    tl = att["timeline"]
    busy = [_union(iv) / 1e6 for iv in per_run]
    span = [(max(e for _, e in iv) - min(s for s, _ in iv)) / 1e6 for iv in per_run]
    assert tl["runs_with_gpu_work"] == 10
    assert tl["busy_ms"] == pytest.approx(np.mean(busy), rel=1e-12)
    assert tl["span_ms"] == pytest.approx(np.mean(span), rel=1e-12)
    assert tl["host_run_ms"] == pytest.approx(np.mean([(e - s) / 1e3 for s, e in runs]), rel=1e-12)
    assert tl["idle_share"] == pytest.approx((np.mean(span) - np.mean(busy)) / np.mean(span), rel=1e-9)


def test_digits_alignment_candidates_and_shares(digits):
    al = C.align(digits["ort_events"], digits["ort_start_ns"], digits["markers"], digits["records"])
    m = digits["markers"]
    assert al["candidates"]["time_ns"]["offset_ns"] == _median_offset(m, "time_ns")
    assert al["candidates"]["monotonic_ns"]["offset_ns"] == _median_offset(m, "monotonic_ns")
    assert al["candidates"]["time_ns"]["alignment"] == 1.0 and al["candidates"]["monotonic_ns"]["alignment"] == 0.0
    assert al["refine_shift_ns"] == 0 and al["in_nodes_before"] == 1.0 and al["in_nodes_after"] == 1.0
    assert al["offset_ns"] == al["candidates"]["time_ns"]["offset_ns"]
    # with only monotonic markers shifted to agree with the system clock's mapping, monotonic wins
    mono_only = [{"cupti_ns": x["cupti_ns"], "monotonic_ns": x["time_ns"] + 7} for x in m]
    al2 = C.align(digits["ort_events"], digits["ort_start_ns"], mono_only, digits["records"])
    assert al2["clock"] == "monotonic_ns" and set(al2["candidates"]) == {"monotonic_ns"}
    assert al2["candidates"]["monotonic_ns"]["offset_ns"] == _median_offset(m, "time_ns") - 7
    # a system-clock marker that is a minute off loses to a correct monotonic one
    both = [{"cupti_ns": x["cupti_ns"], "time_ns": x["time_ns"] - 60 * 10**9, "monotonic_ns": x["time_ns"]} for x in m]
    al3 = C.align(digits["ort_events"], digits["ort_start_ns"], both, digits["records"])
    assert al3["clock"] == "monotonic_ns" and al3["alignment"] == 1.0 and al3["candidates"]["time_ns"]["alignment"] == 0
    with pytest.raises(RunError, match="no clock marker"):
        C.align(digits["ort_events"], digits["ort_start_ns"], [{"cupti_ns": 1}], digits["records"])


def test_digits_launches_are_the_api_calls_that_launched_device_work(digits):
    recs = digits["records"]
    dev = {r["correlation_id"] for r in recs if r["kind"] == "kernel"}
    la = C.launch_array(recs)
    assert la.dtype == np.int64 and list(la) == sorted(la) and len(la) == len(dev) == 180
    exp = sorted(next(r["start"] for r in recs if r["kind"] == "runtime" and r["correlation_id"] == c)
                 if any(r["kind"] == "runtime" and r["correlation_id"] == c for r in recs)
                 else next(r["start"] for r in recs if r["kind"] == "driver" and r["correlation_id"] == c) for c in dev)
    assert la.tolist() == exp


def test_digits_per_layer_table(digits):
    from workbench.measure.mapping import GraphIndex, name_nodes

    proto = name_nodes(wb.load(SAMPLES / "digits_cnn.onnx").proto_with_data())
    ix = GraphIndex.of(proto)
    att = C.attribute_recording(digits)
    meta = {"variant": "v", "backend": "onnxruntime-cuda", "precision": "fp32"}
    df = C.cupti_frame(att, ix, {}, meta)
    per_node, *_ = _brute_force(digits)
    assert set(df.layer) == set(att["nodes"])
    for r in df.itertuples():
        exp = per_node.get(r.layer, {"gpu_ns": 0, "records": 0, "kernels": Counter()})
        assert r.time_ms == pytest.approx(exp["gpu_ns"] / 1e6 / 10, rel=1e-12)
        assert r.kernel_count == exp["records"] / 10 and r.calls == exp["records"] / 10
        assert r.host_ms == pytest.approx(att["nodes"][r.layer]["host_us"] / 1000 / 10, rel=1e-12)
        assert r.time_basis == "cupti-gpu" and r.variant == "v" and r.precision == "fp32"
        names = Counter(exp["kernels"]).most_common()
        assert r.kernels == "; ".join(f"{n} ×{k}" for n, k in names[:12])
    assert df.share.sum() == pytest.approx(1.0)
    assert (df.source == "cupti").all() and (df.iterations == 10).all()
    assert (df.profiled_run_ms == att["timeline"]["host_run_ms"]).all()
    assert (df.gpu_busy_ms == att["timeline"]["busy_ms"]).all() and (df.gpu_span_ms == att["timeline"]["span_ms"]).all()
    assert (df.gpu_idle_share == att["timeline"]["idle_share"]).all()
    assert df.attrs["source"] == "cupti" and df.attrs["time_basis"] == "cupti-gpu" and df.attrs["iterations"] == 10
    assert df.attrs["gpu"] == att["timeline"] and df.attrs["alignment"] == att["alignment"]
    assert df.attrs["counts"] == att["counts"] and df.attrs["profiled_run_ms"] == att["timeline"]["host_run_ms"]
    assert df.attrs["cpu_nodes"] == {"ms": 0.0, "count": 0, "top": []}
    convs = {n.name for n in proto.graph.node if n.op_type == "Conv"}
    assert convs <= {n for nodes in df.onnx_nodes for n in nodes}


# ------------------------------------------------------------------------------ hand-made traces
START, OFF = 1_000_000_000, 5_000
MARKERS = [{"cupti_ns": 1_000 + OFF, "time_ns": 1_000, "monotonic_ns": 10**15, "bracket_ns": 10}]


def _us(t):  # ORT µs -> CUPTI ns on the hand-made clock
    return START + int(round(t * 1000)) + OFF


def _node(name, ts, dur, op="Relu", provider="CUDAExecutionProvider", shapes=None):
    args = {"op_name": op, "provider": provider}
    if shapes is not None:
        args["input_type_shape"] = shapes
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": args}


def _run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _launch(cid, t_us, kind="kernel", dev_start_us=None, dev_ns=3000, api="runtime", name=None):
    s = _us(dev_start_us if dev_start_us is not None else t_us + 2)
    out = [] if api is None else [{"kind": api, "cbid": 1, "start": _us(t_us), "end": _us(t_us) + 100,
                                   "correlation_id": cid, "thread_id": 1}]
    rec = {"kind": kind, "start": s, "end": s + dev_ns, "correlation_id": cid, "stream_id": 7}
    if kind == "kernel":
        rec["name"] = name or f"k{cid}"
    elif kind == "memcpy":
        rec.update(copy_kind="HtoD", bytes=64)
    else:
        rec["bytes"] = 64
    return out + [rec]


def test_attribute_skips_warmup_runs_and_counts_every_record():
    events = [_run(0, 100), _node("a", 10, 50), _run(200, 100), _node("a", 210, 20), _node("b", 240, 40, "Conv"),
              _run(400, 100), _node("a", 410, 20), _node("b", 440, 40, "Conv"),
              {"cat": "Node", "name": "a_fence_before", "ts": 405, "dur": 1}]
    recs = (_launch(1, 20) + _launch(2, 215, dev_ns=1000) + _launch(3, 250, dev_ns=2000)
            + _launch(4, 330, dev_ns=500)  # between the runs: counted, owned by nothing
            + _launch(5, 415, dev_ns=1000) + _launch(6, 445, "memcpy", dev_ns=4000)
            + _launch(7, 460, "memset", dev_ns=100) + _launch(8, 470, dev_ns=50, api=None, dev_start_us=470)
            + _launch(9, 490, "memcpy", dev_ns=10))  # launched outside node b (440-480): a copy row
    att = C.attribute(recs, events, ort_start_ns=START, markers=MARKERS, skip_runs=1)
    assert att["runs"] == 2
    a, b = att["nodes"]["a"], att["nodes"]["b"]
    assert (a["gpu_ns"], a["records"], a["host_us"], a["host_calls"]) == (2000, 2, 40.0, 2)
    assert (b["gpu_ns"], b["records"], b["host_us"], b["host_calls"]) == (2000 + 4000 + 100, 3, 80.0, 2)
    assert dict(b["kernels"]) == {"k3": 1, "memcpy HtoD": 1, "memset": 1} and b["op"] == "Conv"
    assert att["unattributed"] == {"gpu_ns": 500 + 50, "records": 2, "kernels": Counter({"k4": 1, "k8": 1})}
    assert att["copy"] == {"memcpy HtoD": {"gpu_ns": 10, "records": 1, "kernels": Counter({"memcpy HtoD": 1})}}
    assert att["counts"] == {"before_timed_runs": 1, "in_nodes": 5, "between_runs": 1, "no_launch_record": 1,
                             "unattributed_kernels": 2, "copies_outside_nodes": 1}
    # timeline per timed run (device ns): run 1 holds k2 and k3, run 2 the rest launched inside it
    tl = att["timeline"]
    run1 = [(_us(217), _us(217) + 1000), (_us(252), _us(252) + 2000)]
    run2 = [(_us(417), _us(417) + 1000), (_us(447), _us(447) + 4000), (_us(462), _us(462) + 100),
            (_us(470), _us(470) + 50), (_us(492), _us(492) + 10)]
    assert tl["busy_ms"] == pytest.approx(np.mean([3000, 5160]) / 1e6)
    assert tl["span_ms"] == pytest.approx(np.mean([run1[-1][1] - run1[0][0], run2[-1][1] - run2[0][0]]) / 1e6)
    assert tl["host_run_ms"] == pytest.approx(0.1) and tl["runs_with_gpu_work"] == 2
    with pytest.raises(RunError, match="no timed model_run"):
        C.attribute(recs, events, ort_start_ns=START, markers=MARKERS, skip_runs=3)


def test_attribute_picks_the_innermost_node_and_the_minute_bound():
    events = [_run(0, 200e6), _node("outer", 10, 100e6, "If"), _node("inner", 20, 10), _node("late", 50, 5),
              _node("mid", 30, 100)]
    recs = (_launch(1, 25) + _launch(2, 40) + _launch(3, 52) + _launch(4, 120) + _launch(5, 61e6)
            + _launch(6, 20) + _launch(7, 10) + _launch(8, 10 + 100e6))
    att = C.attribute(recs, events, ort_start_ns=START, markers=MARKERS)
    owners = {n: sorted(v["kernels"]) for n, v in att["nodes"].items() if v["records"]}
    # 25 in inner (20-30) and outer; 40 in mid (30-130); 52 in late (50-55, the latest start) and mid;
    # 120 in mid and outer; 20 at inner's start; 10 at outer's start
    assert owners == {"inner": ["k1", "k6"], "mid": ["k2", "k4"], "late": ["k3"], "outer": ["k7"]}
    # 61e6 µs and 100e6+10 (outer's end): inside outer, but the search back from the latest node gives up at
    # nodes that started more than a minute before the launch: unattributed
    assert att["unattributed"]["records"] == 2 and dict(att["unattributed"]["kernels"]) == {"k5": 1, "k8": 1}


def test_attribute_with_skipped_runs_leaves_out_their_nodes_host_time():
    events = [_run(0, 50), _node("a", 5, 30), _run(100, 50), _node("a", 105, 10), _node("z", 151, 3)]
    att = C.attribute(_launch(1, 110), events, ort_start_ns=START, markers=MARKERS, skip_runs=1)
    assert set(att["nodes"]) == {"a"} and att["nodes"]["a"]["host_us"] == 10.0 and att["nodes"]["a"]["host_calls"] == 1
    # a node starting before the timed runs (ts < first run) is left out too, one ending after the last too
    events2 = [_run(100, 50), _node("early", 99, 10), _node("a", 105, 10), _node("tail", 145, 6)]
    att2 = C.attribute(_launch(1, 110), events2, ort_start_ns=START, markers=MARKERS)
    assert set(att2["nodes"]) == {"a"}
    # a node ending exactly at the last run's end is inside
    events3 = [_run(100, 50), _node("a", 105, 10), _node("tail", 140, 10)]
    assert set(C.attribute(_launch(1, 110), events3, ort_start_ns=START, markers=MARKERS)["nodes"]) == {"a", "tail"}


def test_runs_and_nodes_read_only_their_events():
    events = [_run(5, 10), {"cat": "Session", "name": "SequentialExecutor::Execute", "ts": 5, "dur": 9},
              {"cat": "Node", "name": "model_run", "ts": 0, "dur": 1}, _run(1, 2),
              _node("b", 7, 1, "Conv", "CPUExecutionProvider", [{"float": [1, 2]}]),
              {"cat": "Node", "name": "a_kernel_time", "ts": 6, "dur": 2},
              {"cat": "Node", "name": "a_fence_after", "ts": 8, "dur": 0},
              {"cat": "Node", "name": "c_kernel_time", "ts": 9, "dur": 1, "args": None}]
    assert C._runs(events) == [(1.0, 3.0), (5.0, 15.0)]
    nodes = C._nodes(events)
    assert [n["name"] for n in nodes] == ["a", "b", "c"]
    assert nodes[0] == {"name": "a", "ts": 6.0, "dur": 2.0, "op": "", "provider": "", "shapes": None}
    assert nodes[1] == {"name": "b", "ts": 7.0, "dur": 1.0, "op": "Conv", "provider": "CPU", "shapes": [{"float": [1, 2]}]}
    assert nodes[2]["op"] == "" and nodes[2]["provider"] == ""


def test_launch_times_prefers_the_runtime_call():
    recs = [{"kind": "driver", "correlation_id": 1, "start": 10}, {"kind": "runtime", "correlation_id": 1, "start": 20},
            {"kind": "driver", "correlation_id": 1, "start": 30},
            {"kind": "runtime", "correlation_id": 2, "start": 40}, {"kind": "runtime", "correlation_id": 2, "start": 50},
            {"kind": "driver", "correlation_id": 3, "start": 60}, {"kind": "driver", "correlation_id": 3, "start": 70},
            {"kind": "kernel", "correlation_id": 4, "start": 80, "end": 90}]
    lt = C.launch_times(recs)
    assert {c: r["start"] for c, r in lt.items()} == {1: 20, 2: 40, 3: 60}
    assert C.launch_array(recs).tolist() == []  # no device record shares an id with a launch
    assert C.launch_array(recs).dtype == np.int64  # ns since the epoch: exact only as integers
    recs.append({"kind": "memset", "correlation_id": 3, "start": 1, "end": 2})
    recs.append({"kind": "memcpy", "correlation_id": 1, "start": 1, "end": 2})
    assert C.launch_array(iter(recs)).tolist() == [20, 60]


def test_refine_offset_finds_the_smallest_shift_and_keeps_nested_nodes():
    start = 10**12
    events = [_run(0, 1000), _node("outer", 0, 500), _node("inner", 10, 10), _node("n2", 600, 4)]
    # launches at 100 µs (in outer after inner ended: inside through the outer's running end) and 601.5 µs
    launches = np.array([start + 100_000, start + 601_500], dtype=np.int64)
    assert C.refine_offset(events, start, 0, launches) == (0, 1.0, 1.0)
    # offset 3 µs too large: the 601.5 launch lands at 598.5, before n2; the smallest shift putting it back is
    # -1500 + ... : any shift in [-5000, -1500] works (n2 is 600..604); the one closest to 0 is -1500
    shift, before, after = C.refine_offset(events, start, 3000, launches)
    assert (shift, before, after) == (-1500, 0.5, 1.0)
    # beyond the bound nothing is pulled in; a coarser step finds the nearest multiple
    assert C.refine_offset(events, start, 20_000, launches) == (0, 0.5, 0.5)
    assert C.refine_offset(events, start, 3000, launches, max_shift_ns=1000) == (0, 0.5, 0.5)
    assert C.refine_offset(events, start, 3000, launches, step_ns=1000)[0] == -2000
    # offset 3 µs too small: 601.5 lands at 604.5, after n2's end (604): the smallest positive shift is 500
    assert C.refine_offset(events, start, -3000, launches) == (500, 0.5, 1.0)
    assert C.refine_offset(events, start, 0, np.array([], dtype=np.int64)) == (0, 0.0, 0.0)
    assert C.refine_offset([_run(0, 10)], start, 0, launches) == (0, 0.0, 0.0)
    assert C.REFINE_MAX_NS == 5000


def test_union_and_timeline_by_hand():
    assert C._union_ns([]) == 0
    assert C._union_ns([(0, 10)]) == 10
    assert C._union_ns([(5, 8), (0, 10), (10, 12), (20, 25), (24, 30)]) == 22  # 0-12 (touching joins) + 20-30
    assert C._union_ns([(0, 10), (11, 12)]) == 11
    assert C._union_ns([(0, 10), (2, 4)]) == 10  # contained
    tl = C.gpu_timeline([[(0, 2_000_000), (1_000_000, 3_000_000)], [], [(10, 1_000_010)]],
                        np.array([0.0, 100.0, 200.0]), np.array([4000.0, 2100.0, 1200.0]))
    # busy: 3 ms and 1 ms (mean 2); span: 3 and 1 (mean 2); host: 4, 2, 1 ms (mean 7/3); one run without work
    assert tl == pytest.approx({"busy_ms": 2.0, "span_ms": 2.0, "host_run_ms": 7 / 3, "idle_share": 0.0,
                                "runs_with_gpu_work": 2})
    tl2 = C.gpu_timeline([[(0, 1_000_000), (3_000_000, 4_000_000)]], [0.0], [5000.0])
    assert tl2["busy_ms"] == 2.0 and tl2["span_ms"] == 4.0 and tl2["idle_share"] == 0.5 and tl2["host_run_ms"] == 5.0
    assert C.gpu_timeline([], [], []) == {"busy_ms": 0.0, "span_ms": 0.0, "host_run_ms": 0.0, "idle_share": 0.0,
                                          "runs_with_gpu_work": 0}


def test_labels_and_kernel_text():
    assert C._label({"kind": "kernel", "name": "gemm"}) == "gemm" and C._label({"kind": "kernel"}) == "?"
    assert C._label({"kind": "memcpy", "copy_kind": "DtoH"}) == "memcpy DtoH" and C._label({"kind": "memcpy"}) == "memcpy ?"
    assert C._label({"kind": "memset", "name": "x"}) == "memset"
    c = Counter({f"k{i:02d}": 20 - i for i in range(14)})
    text = C._kernel_text(c)
    assert text == "; ".join(f"k{i:02d} ×{20 - i}" for i in range(12)) + "; … 2 more"
    assert C._kernel_text(c, limit=2) == "k00 ×20; k01 ×19; … 12 more"
    assert C._kernel_text(Counter({"a": 1, "b": 3})) == "b ×3; a ×1" and C._kernel_text(Counter()) == ""
    assert C._kernel_text(Counter({f"x{i}": 1 for i in range(12)})).count(";") == 11  # exactly at the limit


def _att():
    return {"nodes": {
        "conv": {"gpu_ns": 6_000_000, "records": 4, "kernels": Counter({"implicit_gemm": 2, "bias": 2}), "host_us": 80.0,
                 "host_calls": 2, "op": "Conv", "provider": "CUDA", "shapes": [{"float": [1, 3, 8, 8]}]},
        "shape": {"gpu_ns": 0, "records": 0, "kernels": Counter(), "host_us": 30.0, "host_calls": 2, "op": "Shape",
                  "provider": "CPU", "shapes": None},
        "gather": {"gpu_ns": 500, "records": 2, "kernels": Counter({"memcpy HtoD": 2}), "host_us": 10.0, "host_calls": 2,
                   "op": "Gather", "provider": "CPU", "shapes": None},
        "c1": {"gpu_ns": 0, "records": 0, "kernels": Counter(), "host_us": 1.0, "host_calls": 2, "op": "Cast",
               "provider": "CPU", "shapes": None},
        "c2": {"gpu_ns": 0, "records": 0, "kernels": Counter(), "host_us": 2.0, "host_calls": 2, "op": "Cast",
               "provider": "CPU", "shapes": None},
        "c3": {"gpu_ns": 0, "records": 0, "kernels": Counter(), "host_us": 4.0, "host_calls": 2, "op": "Cast",
               "provider": "CPU", "shapes": None}},
        "copy": {"memcpy HtoD": {"gpu_ns": 2_000_000, "records": 2, "kernels": Counter({"memcpy HtoD": 2})},
                 "memcpy DtoH": {"gpu_ns": 1_000_000, "records": 2, "kernels": Counter({"memcpy DtoH": 2})}},
        "unattributed": {"gpu_ns": 400_000, "records": 2, "kernels": Counter({"stray": 2})},
        "runs": 2, "timeline": {"busy_ms": 1.0, "span_ms": 2.0, "host_run_ms": 3.0, "idle_share": 0.5},
        "alignment": {"clock": "time_ns"}, "counts": {"in_nodes": 6}}


def test_attribution_stats_and_cpu_nodes():
    att = _att()
    stats, extra = C.attribution_stats(att)
    assert stats["conv"] == {"dur_us": 6000.0, "count": 4, "op": "Conv", "provider": "CUDA",
                             "shapes": "float[1, 3, 8, 8]", "time_basis": "cupti-gpu", "host_us": 80.0,
                             "kernel_count": 4, "kernels": "implicit_gemm ×2; bias ×2"}
    assert stats["shape"] == {"dur_us": 30.0, "count": 2, "op": "Shape", "provider": "CPU", "shapes": "",
                              "time_basis": "host", "host_us": 30.0, "kernel_count": 0, "kernels": ""}
    assert stats["gather"]["dur_us"] == 10.0 and stats["gather"]["count"] == 2 and stats["gather"]["kernel_count"] == 2
    assert extra == [
        {"layer": "copy (memcpy DtoH)", "layer_type": "copy", "onnx_node": C.COPY_ONNX_NODE, "gpu_ns": 1_000_000,
         "records": 2, "kernels": "memcpy DtoH ×2"},
        {"layer": "copy (memcpy HtoD)", "layer_type": "copy", "onnx_node": C.COPY_ONNX_NODE, "gpu_ns": 2_000_000,
         "records": 2, "kernels": "memcpy HtoD ×2"},
        {"layer": "unattributed kernels", "layer_type": "unattributed", "onnx_node": C.UNATTRIBUTED_ONNX_NODE,
         "gpu_ns": 400_000, "records": 2, "kernels": "stray ×2"}]
    att["unattributed"] = {"gpu_ns": 0, "records": 0, "kernels": Counter()}
    assert [e["layer_type"] for e in C.attribution_stats(att)[1]] == ["copy", "copy"]
    # CPU-provider nodes, host ms per run, largest first, top 4
    cpu = C.cpu_nodes(_att())
    assert cpu["count"] == 5 and cpu["ms"] == pytest.approx((30 + 10 + 1 + 2 + 4) / 1000 / 2)
    assert cpu["top"] == [("shape", 0.015), ("gather", 0.005), ("c3", 0.002), ("c2", 0.001)]
    assert C.cpu_nodes(_att(), top=1)["top"] == [("shape", 0.015)]
    zero = {**_att(), "runs": 0}
    assert C.cpu_nodes(zero)["ms"] == pytest.approx(0.047)  # runs 0 counts as one run


def test_layer_rows_per_run_and_extra_rows():
    from onnx import TensorProto as T
    from onnx import helper as h

    from workbench.measure.mapping import GraphIndex

    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"), h.make_node("Shape", ["c"], ["s"], name="shape"),
             h.make_node("Gather", ["s", "i"], ["g"], name="gather"), h.make_node("Cast", ["g"], ["y1"], name="c1", to=T.INT64),
             h.make_node("Cast", ["y1"], ["y2"], name="c2", to=T.INT64), h.make_node("Cast", ["y2"], ["y"], name="c3", to=T.INT64)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.INT64, None)],
                     initializer=[h.make_tensor("w", T.FLOAT, [1, 3, 1, 1], [1, 1, 1]), h.make_tensor("i", T.INT64, [], [0])])
    ix = GraphIndex.of(h.make_model(g))
    rows = {r["layer"]: r for r in C.layer_rows(_att(), ix, {})}
    conv = rows["conv"]
    assert conv["time_ms"] == 3.0 and conv["calls"] == 2.0 and conv["onnx_node"] == "conv"
    assert conv["time_basis"] == "cupti-gpu" and conv["host_ms"] == 0.04 and conv["kernel_count"] == 2.0
    assert conv["kernels"] == "implicit_gemm ×2; bias ×2"
    assert rows["shape"]["time_ms"] == 0.015 and rows["shape"]["time_basis"] == "host" and rows["shape"]["calls"] == 1.0
    assert rows["shape"]["kernel_count"] == 0.0 and rows["shape"]["host_ms"] == 0.015
    assert rows["copy (memcpy HtoD)"] == {
        "layer": "copy (memcpy HtoD)", "layer_type": "copy", "onnx_nodes": [], "onnx_node": C.COPY_ONNX_NODE,
        "provider": "CUDA", "time_ms": 1.0, "calls": 1.0, "mapped_by": "cupti", "shapes": "", "time_basis": "cupti-gpu",
        "host_ms": 0.0, "kernel_count": 1.0, "kernels": "memcpy HtoD ×2"}
    assert rows["unattributed kernels"]["time_ms"] == 0.2 and rows["unattributed kernels"]["onnx_node"] == "<unattributed>"
    only_copies = {**_att(), "nodes": {}}
    assert [r["layer"] for r in C.layer_rows(only_copies, ix, {})] == ["copy (memcpy DtoH)", "copy (memcpy HtoD)",
                                                                        "unattributed kernels"]


def test_trt_cross_check_by_hand():
    recs = [{"kind": "kernel", "start": 0, "end": 2_000_000}, {"kind": "memcpy", "start": 5, "end": 1_000_005},
            {"kind": "runtime", "start": 0, "end": 9_000_000}, {"kind": "memset", "start": 0, "end": 1_000_000}]
    assert C.trt_cross_check(recs, 2, 3.0) == {"gpu_ms": 2.0, "iprofiler_ms": 3.0, "ratio": 1.5, "kernels_per_iter": 1.5}
    assert C.trt_cross_check(recs, 0, 4.0)["gpu_ms"] == 4.0  # no iteration count: one
    one = C.trt_cross_check(recs, 1, 2.0)
    assert one["kernels_per_iter"] == 3.0 and one["gpu_ms"] == 4.0 and one["ratio"] == 0.5
    short = C.trt_cross_check([{"kind": "kernel", "start": 0, "end": 500_000}], 1, 1.0)  # 0.5 ms of GPU time
    assert short["ratio"] == 2.0
    empty = C.trt_cross_check([], 3, 1.0)
    assert empty["gpu_ms"] == 0 and np.isnan(empty["ratio"]) and empty["kernels_per_iter"] == 0


def test_recording_roundtrip_and_refusal(tmp_path, digits):
    p = C.save_recording(digits, tmp_path / "r.json.gz")
    assert p == tmp_path / "r.json.gz" and C.load_recording(p) == digits
    raw = p.read_bytes()
    assert gzip.decompress(raw) == json.dumps(digits, separators=(",", ":")).encode()
    assert C.save_recording(digits, tmp_path / "s.json.gz").read_bytes() == raw  # mtime 0: same bytes
    assert raw[4:8] == b"\0\0\0\0"  # gzip header MTIME field: 0, so a recording's bytes do not depend on when
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(json.dumps({"format": "other"}).encode()))
    with pytest.raises(RunError, match="not a workbench CUPTI recording"):
        C.load_recording(bad)
    bad.write_bytes(gzip.compress(b"{}"))
    with pytest.raises(WorkbenchError):
        C.load_recording(bad)
    no_skip = {k: v for k, v in digits.items() if k != "skip_runs"}
    assert C.attribute_recording(no_skip)["runs"] == 13  # every run counts without skip_runs


# ------------------------------------------------------------------- stand-ins for cupti-python
class FakeCupti:
    """Stands in for the cupti-python module object only: its ActivityKind enum values (CUPTI's
    CUpti_ActivityKind: MEMCPY 1, MEMSET 2, KERNEL 3, DRIVER 4, RUNTIME 5, CONCURRENT_KERNEL 10) and
    get_timestamp()."""

    ActivityKind = SimpleNamespace(MEMCPY=1, MEMSET=2, KERNEL=3, DRIVER=4, RUNTIME=5, CONCURRENT_KERNEL=10)

    def __init__(self, slow=()):
        self.calls, self.slow = 0, set(slow)
        self.registered = None

    def get_timestamp(self):
        self.calls += 1
        if self.calls in self.slow:
            time.sleep(0.003)
        return 10**18 + self.calls

    def activity_register_callbacks(self, requested, completed):
        self.registered = (requested, completed)


def _act(kind, **kw):
    base = dict(kind=kind, start=100, end=250, correlation_id=7, stream_id=3, name="gemm", copy_kind=2, bytes=4096,
                cbid=211, thread_id=99)
    base.update(kw)
    return SimpleNamespace(**base)


def test_record_to_dict_copies_the_fields_per_kind():
    f = FakeCupti()
    common = {"start": 100, "end": 250, "correlation_id": 7}
    for k in (10, 3):
        assert C._record_to_dict(_act(k), f) == {"kind": "kernel", "name": "gemm", **common, "stream_id": 3}
    assert C._record_to_dict(_act(1), f) == {"kind": "memcpy", "copy_kind": "DtoH", "bytes": 4096, **common, "stream_id": 3}
    assert C._record_to_dict(_act(1, copy_kind=8), f)["copy_kind"] == "DtoD"
    assert C._record_to_dict(_act(1, copy_kind=42), f)["copy_kind"] == "42"
    assert C._record_to_dict(_act(2), f) == {"kind": "memset", "bytes": 4096, **common, "stream_id": 3}
    assert C._record_to_dict(_act(5), f) == {"kind": "runtime", "cbid": 211, **common, "thread_id": 99}
    assert C._record_to_dict(_act(4), f) == {"kind": "driver", "cbid": 211, **common, "thread_id": 99}
    assert C._record_to_dict(_act(6), f) is None


def test_collector_routes_completed_buffers_into_the_active_sink(monkeypatch):
    monkeypatch.setattr(C._Collector, "registered", False)
    monkeypatch.setattr(C._Collector, "sink", None)
    monkeypatch.setattr(C._Collector, "dropped_kinds", Counter())
    f = FakeCupti()
    C._Collector.ensure(f)
    requested, completed = f.registered
    assert requested() == (8 * 1024 * 1024, 0) and C._Collector.registered is True
    completed([_act(3)])  # no active trace: dropped silently
    sink = []
    monkeypatch.setattr(C._Collector, "sink", sink)
    completed([_act(3), _act(6), SimpleNamespace(), _act(5), _act(6)])  # a record without fields: kind -1
    assert [r["kind"] for r in sink] == ["kernel", "runtime"]
    assert C._Collector.dropped_kinds == Counter({6: 2, -1: 1})
    g = FakeCupti()
    C._Collector.ensure(g)  # registered once per process
    assert g.registered is None


def test_clock_marker_keeps_the_tightest_sample():
    f = FakeCupti(slow={1, 2, 4, 5})  # only the third reading is fast
    t0 = time.time_ns()
    m = C.clock_marker(f)
    t1 = time.time_ns()
    assert f.calls == 5 and m["cupti_ns"] == 10**18 + 3
    assert m["bracket_ns"] < 3_000_000 and t0 <= m["time_ns"] <= t1
    assert set(m) == {"cupti_ns", "time_ns", "monotonic_ns", "bracket_ns"}
    # integers: ns since the epoch (~1.8e18) are not exact as floats (above 2**53)
    assert all(type(v) is int for v in m.values())
    assert abs(m["monotonic_ns"] - time.monotonic_ns()) < 10**9
    f2 = FakeCupti(slow={1})
    assert C.clock_marker(f2, samples=2)["cupti_ns"] == 10**18 + 2 and f2.calls == 2


def test_attribute_boundaries_are_inclusive():
    # run 100..200; nodes: "first" starts exactly at the run's start, "a" 130..140, "b" 170..200 ends with the run.
    # Launches more than REFINE_MAX_NS away from every node, so the clock refinement has nothing to gain.
    events = [_run(100, 100), _node("first", 100, 5, shapes=[{"float": [2]}]), _node("a", 130, 10), _node("b", 170, 30)]
    recs = (_launch(1, 100) + _launch(2, 140) + _launch(3, 200) + _launch(4, 155)
            + _launch(5, 90) + _launch(6, 210))
    att = C.attribute(recs, events, ort_start_ns=START, markers=MARKERS)
    assert att["alignment"]["refine_shift_ns"] == 0
    assert set(att["nodes"]) == {"first", "a", "b"} and att["nodes"]["first"]["shapes"] == [{"float": [2]}]
    # launch at the run's start and the first node's start; at a's end; at the run's and b's end
    assert {n: sorted(v["kernels"]) for n, v in att["nodes"].items()} == {"first": ["k1"], "a": ["k2"], "b": ["k3"]}
    assert dict(att["unattributed"]["kernels"]) == {"k4": 1, "k6": 1}  # between nodes; after the run
    assert att["counts"] == {"in_nodes": 3, "unattributed_kernels": 2, "before_timed_runs": 1, "between_runs": 1}
    assert att["timeline"]["runs_with_gpu_work"] == 1


def test_align_without_launches_or_runs_keeps_the_first_clock():
    events = [_run(0, 10), _node("a", 1, 2)]
    no_dev = [{"kind": "runtime", "cbid": 1, "start": _us(1), "end": _us(2), "correlation_id": 1, "thread_id": 1}]
    al = C.align(events, START, MARKERS, no_dev)
    assert al["clock"] == "time_ns" and al["alignment"] == 0.0 and al["offset_ns"] == OFF
    assert al["candidates"]["monotonic_ns"]["alignment"] == 0.0
    assert (al["refine_shift_ns"], al["in_nodes_before"], al["in_nodes_after"]) == (0, 0.0, 0.0)
    al2 = C.align([], START, MARKERS, _launch(1, 5))  # no runs: nothing inside
    assert al2["alignment"] == 0.0 and al2["candidates"]["time_ns"]["offset_ns"] == OFF
    # three markers: the median offset, not the mean
    ms = [{"cupti_ns": 100 + d, "time_ns": 100} for d in (5_000, 5_010, 9_000_000)]
    assert C.align(events, START, ms, _launch(1, 1.5))["candidates"]["time_ns"]["offset_ns"] == 5_010
    # a launch exactly at a run's start and one at its end are inside
    edge = _launch(1, 0) + _launch(2, 10)
    assert C.align(events, START, MARKERS, edge)["alignment"] == 1.0
    assert C.align(events, START, MARKERS, _launch(1, -0.5) + _launch(2, 10.5))["alignment"] == 0.0


def test_cpu_nodes_round_to_a_tenth_of_a_microsecond():
    att = {"runs": 2, "nodes": {"n": {"host_us": 24.68, "provider": "CPU"}, "g": {"host_us": 99.0, "provider": "CUDA"}}}
    assert C.cpu_nodes(att) == {"ms": pytest.approx(0.01234), "count": 1, "top": [("n", 0.0123)]}


def test_align_returns_the_refined_offset():
    # with the marker's 3 µs offset every launch lands 1.5 µs before its 3 µs node; 1.5 µs less puts them inside
    events = [_run(0, 1000)] + [_node(f"n{i}", 10 + 20 * i, 3) for i in range(20)]
    start = 10**12
    marker = [{"cupti_ns": 3_000, "time_ns": 0}]
    recs = []
    for i in range(20):
        recs += [{"kind": "runtime", "start": start + (10 + 20 * i) * 1000 + 1500,
                  "end": 0, "correlation_id": i}, {"kind": "kernel", "start": 0, "end": 1, "correlation_id": i}]
    al = C.align(events, start, marker, recs)
    assert al["candidates"]["time_ns"]["offset_ns"] == 3000 and al["refine_shift_ns"] == -1500
    assert al["offset_ns"] == 1500 and al["in_nodes_before"] == 0.0 and al["in_nodes_after"] == 1.0


def test_refine_offset_edges():
    start = 10**12
    events = [_run(0, 1000), _node("outer", 0, 500), _node("inner", 10, 10), _node("n2", 600, 4)]
    at_start = np.array([start + 100_000, start + 600_000], dtype=np.int64)  # exactly at n2's start
    assert C.refine_offset(events, start, 0, at_start) == (0, 1.0, 1.0)
    just_after = np.array([start + 100_000, start + 604_002], dtype=np.int64)  # 2 ns after n2's end
    assert C.refine_offset(events, start, 0, just_after) == (250, 0.5, 1.0)
    far = np.array([start + 100_000, start + 601_500], dtype=np.int64)  # 5 µs after n2's end once offset
    assert C.refine_offset(events, start, -7500, far) == (5000, 0.5, 1.0)  # the bound itself is allowed


def test_attribute_counts_every_skipped_record():
    events = [_run(0, 20), _run(100, 20), _node("a", 102, 10), _run(200, 20)]
    recs = (_launch(1, 5) + _launch(2, 6)  # two in the skipped run
            + _launch(3, 150) + _launch(4, 160)  # two between the timed runs
            + _launch(5, 105, api=None, dev_start_us=105) + _launch(6, 106, api=None, dev_start_us=106)
            + _launch(7, 103, "memcpy") + _launch(8, 104, "memset")  # inside node a
            + _launch(9, 201, "memcpy") + _launch(10, 210, "memset"))  # outside nodes
    att = C.attribute(recs, events, ort_start_ns=START, markers=MARKERS, skip_runs=1)
    assert att["counts"] == {"before_timed_runs": 2, "between_runs": 2, "no_launch_record": 2,
                             "unattributed_kernels": 4, "in_nodes": 2, "copies_outside_nodes": 2}


def test_attribute_searches_back_at_most_a_minute():
    def owner(nodes, t):
        events = [_run(0, 200e6)] + [_node(n, s, d) for n, s, d in nodes]
        att = C.attribute(_launch(1, t), events, ort_start_ns=START, markers=MARKERS)
        return [n for n, v in att["nodes"].items() if v["records"]] or att["unattributed"]["records"] * ["?"]

    # a long node A and a short later node B that does not contain the launch: A is searched only if it started
    # at most 60 s (60e6 µs) before the launch
    assert owner([("A", 0, 100e6), ("B", 10, 5)], 61e6) == ["?"]
    assert owner([("A", 0, 100e6), ("B", 10, 5)], 60e6) == ["A"]  # exactly a minute: still searched
    assert owner([("A", 0, 100e6), ("B", 10, 5)], 60e6 + 0.5) == ["?"]
    assert owner([("A", 70e6, 20), ("B", 70e6 + 5, 2)], 70e6 + 10) == ["A"]  # late in the run, close together
