"""One JSON policy for every record, frame and CLI output: NaN -> null, +-Inf -> "inf"/"-inf", read back as floats."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import workbench
from workbench.compare.metrics import json_number
from workbench.fsutil import dumps_json, json_float, json_safe
from workbench.records import frame_from_json, frame_to_json


def test_scalars_and_containers_follow_one_convention():
    obj = {"nan": np.float32("nan"), "inf": np.inf, "ninf": -math.inf, "arr": np.array([1.5, np.inf]),
           "t": (np.int64(3), np.bool_(True)), "na": pd.NA}
    assert json.loads(dumps_json(obj)) == {"nan": None, "inf": "inf", "ninf": "-inf", "arr": [1.5, "inf"],
                                           "t": [3, True], "na": None}
    assert json_number(float("nan")) is None and json_number(np.bool_(False)) is False  # compare uses the policy
    assert json_number(-np.inf) == "-inf" and json_safe(np.float64(2.0)) == 2.0
    assert math.isinf(json_float("inf")) and json_float("-inf") < 0 and math.isnan(json_float(None))
    assert math.isinf(json_float({"$float": "inf"}))  # flow.json written before the policy still reads


def test_frames_round_trip_with_non_finite_and_list_cells():
    df = pd.DataFrame({"variant": ["a", "b", "c"], "time_ms": [1.0, np.inf, np.nan],
                       "value": [0.5, np.inf, True], "onnx_nodes": [["n1", "n2"], [], ["inf"]],
                       "name": ["inf", "x", "y"]})
    d = json.loads(dumps_json(frame_to_json(df)))
    assert d["rows"][1][1] == "inf" and d["rows"][2][1] is None
    back = frame_from_json(d)
    assert back["time_ms"].iloc[1] == np.inf and np.isnan(back["time_ms"].iloc[2])
    assert back["value"].iloc[1] == np.inf  # a mixed numbers/bools column gets its infinities back
    assert back["name"].iloc[0] == "inf" and back["onnx_nodes"].iloc[2] == ["inf"]  # text stays text


def test_layer_tables_carry_their_run_facts_in_columns(sample):
    """Metadata lives in columns, so pd.concat of two variants' tables keeps each one's facts."""
    from workbench.builds import build_variants
    from workbench.data import synthetic_inputs
    from workbench.measure.layers import RUN_COLUMNS, profile_layers

    model = workbench.load(sample("digits_cnn.onnx"))
    bs = build_variants(model, "fp32,fp16", progress=False)
    feeds = synthetic_inputs(model, batch=1)
    frames = [profile_layers(r.engine, feeds, iterations=2, warmup=1) for r in bs]
    both = pd.concat(frames, ignore_index=True)
    assert set(RUN_COLUMNS) <= set(both.columns) and not both.attrs
    per = both.groupby("variant")[["source", "iterations"]].first()
    assert set(per["source"]) == {"onnxruntime-profiler"} and set(per["iterations"]) == {2}
    assert both.groupby("variant")["profiled_run_ms"].nunique().eq(1).all()
    assert (both["profiled_run_ms"] > 0).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_records_are_strict_json(tmp_path, value):
    from workbench.measure.latency import LatencyResult

    r = LatencyResult(variant="v", stats={"p50_ms": value})
    text = r.save(tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict literal {c}"))


def test_layerwise_results_concatenate_with_their_rule_and_unmatched_tensors(sample):
    """Two layerwise() results under different rules, one with a tensor it could not pair: after pd.concat
    each row still says which rule made ``diverged``, and the unmatched tensors survive as a frame."""
    import workbench as wb
    from workbench.compare.layerwise import layerwise, unmatched_frame

    m = wb.load(sample("digits_cnn.onnx"))
    fp16 = wb.make_variant(m, "fp16")
    cut = wb.edit.remove_node(m, "/classifier/relu/Relu")  # its output tensor is gone from this variant
    data = sample("digits_test.npz")
    a = layerwise(m, fp16, data=data, limit=8, metric="cosine", threshold=0.99999, progress=False)
    b = layerwise(m, cut, data=data, limit=8, metric="max_abs", threshold=1e-3, progress=False)
    both = pd.concat([a, b], ignore_index=True)
    rules = both.groupby("variant")[["divergence_metric", "divergence_threshold"]].first()
    assert rules.to_dict("index") == {a.variant.iloc[0]: {"divergence_metric": "cosine", "divergence_threshold": 0.99999},
                                      b.variant.iloc[0]: {"divergence_metric": "max_abs", "divergence_threshold": 1e-3}}
    for r in both.itertuples():  # diverged follows the row's own rule
        v = getattr(r, r.divergence_metric)
        worse = v < r.divergence_threshold if r.divergence_metric == "cosine" else v > r.divergence_threshold
        assert bool(r.diverged) == bool(worse), r
    un = pd.concat([unmatched_frame(a), unmatched_frame(b)], ignore_index=True)
    relu_out = next(n.output[0] for n in m.graph.node if n.name == "/classifier/relu/Relu")
    assert un.to_dict("records") == [{"variant": b.variant.iloc[0], "precision": b.precision.iloc[0],
                                      "onnx_node": "/classifier/relu/Relu", "op_type": "Relu", "tensor": relu_out,
                                      "reason": b.attrs["unmatched"][0]["reason"]}]
    back = frame_from_json(json.loads(json.dumps(frame_to_json(both))))
    assert back[["divergence_metric", "divergence_threshold"]].equals(both[["divergence_metric", "divergence_threshold"]])


def test_cupti_tables_keep_what_coverage_needs_through_concat():
    """A CUPTI per-layer table (built from an H200 recording in tests/data) carries its run facts and GPU
    timeline in columns: coverage() of one variant inside a concatenation of several tables (attrs gone,
    as in FlowResult.layers) equals coverage() of the table as profiled."""
    from pathlib import Path

    import workbench as wb
    from workbench.measure import cupti as C
    from workbench.measure.latency import LatencyResult, latency_stats
    from workbench.measure.layers import RUN_COLUMNS, coverage
    from workbench.measure.mapping import GraphIndex, name_nodes

    data = Path(__file__).resolve().parent / "data" / "cupti_h200_digits_cnn_fp32_b32.json.gz"
    rec = C.load_recording(data)
    proto = name_nodes(wb.load(Path(__file__).resolve().parents[1] / "sample_models" / "digits_cnn.onnx")
                       .proto_with_data())
    att = C.attribute_recording(rec)
    df = C.cupti_frame(att, GraphIndex.of(proto), {}, {"variant": "a", "backend": "onnxruntime-cuda",
                                                        "precision": "fp32"})
    assert df[RUN_COLUMNS[:3]].drop_duplicates().values.tolist() == [["cupti", att["runs"],
                                                                      att["timeline"]["host_run_ms"]]]
    assert df.gpu_busy_ms.iloc[0] == att["timeline"]["busy_ms"] and (df.time_basis == "cupti-gpu").any()
    other = df.assign(variant="b", time_ms=df.time_ms * 3, gpu_busy_ms=9.0, gpu_idle_share=0.0)
    both = pd.concat([other, df], ignore_index=True)
    both.attrs = {}  # what a reloaded / concatenated table has
    gpu_ms = float(df[df.time_basis == "cupti-gpu"].time_ms.sum())
    for e2e in (gpu_ms, 3 * gpu_ms):  # inside the goal, then flagged with the GPU-idle reason
        lat = LatencyResult(variant="a", backend="onnxruntime-cuda", precision="fp32", batch=32, device={},
                            timer="cuda-events", warmup=1, requested_iterations=3, time_budget_s=None,
                            times_ms=[e2e] * 3, stats=latency_stats([e2e] * 3))
        want, got = coverage(df, lat), coverage(both, lat)
        assert (got.ratio, got.basis, got.reason, got.gpu_busy_ms, got.profiled_run_ms) == \
            (want.ratio, want.basis, want.reason, want.gpu_busy_ms, want.profiled_run_ms)
    assert want.flagged and want.basis == "cupti-gpu" and want.reason
