"""Tests written against mutants of the summary path that survived `make mutate` (issue 23): the speedup and
"faster / slower / within noise" verdicts (workbench/measure/repeat.py), ``FlowResult.summary`` /
``summary_text`` (workbench/flow.py) and the report's summary table (workbench/report.py).

The frames are built by hand here, so every expected number is computed in the test from raw values:
speedup = the backend's fp32 p50 / the variant's p50; its range = min/max over blocks of the per-block ratio.
``measure_blocks`` is driven by plain Python engines that honour the public Engine contract (host timer).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.backends.base import Engine, TimedCall
from workbench.errors import RunError
from workbench.flow import SUMMARY_COLUMNS, BuildEntry, FlowResult
from workbench.measure import repeat
from workbench.measure.repeat import blocks_frame, measure_blocks, speed_verdicts
from workbench.report import summary_frame, summary_html

# two backends, each with its own fp32 reference (a summary that used the other backend's fp32 is caught)
LAT = pd.DataFrame([
    {"variant": "m_fp32", "backend": "ort", "precision": "fp32", "p50_ms": 10.0, "block_p50_ms": [10.0, 10.0, 10.0]},
    {"variant": "m_fp16", "backend": "ort", "precision": "fp16", "p50_ms": 4.0, "block_p50_ms": [4.0, 5.0, 4.0]},
    {"variant": "m_int8", "backend": "ort", "precision": "int8", "p50_ms": 12.5, "block_p50_ms": [12.5, 12.5, 12.0]},
    {"variant": "m_bf16", "backend": "ort", "precision": "bf16", "p50_ms": 9.9, "block_p50_ms": [9.0, 11.0, 9.9]},
    {"variant": "m_fp32", "backend": "trt", "precision": "fp32", "p50_ms": 2.0, "block_p50_ms": [2.0]},
    {"variant": "m_fp16", "backend": "trt", "precision": "fp16", "p50_ms": 1.0, "block_p50_ms": [1.0]},
    {"variant": "m_int8", "backend": "trt", "precision": "int8", "p50_ms": 4.0, "block_p50_ms": [4.0]},
])


def _ratios(ref_blocks, blocks):
    return [a / b for a, b in zip(ref_blocks, blocks)]


def test_speed_verdicts_recomputed_from_raw_p50s():
    v = speed_verdicts(LAT).set_index(["variant", "backend"])
    assert list(speed_verdicts(LAT).columns) == ["variant", "backend", "precision", "speedup", "speedup_lo",
                                                 "speedup_hi", "verdict"]
    for r in LAT.to_dict("records"):
        ref = LAT[(LAT.backend == r["backend"]) & (LAT.precision == "fp32")].iloc[0]
        row = v.loc[(r["variant"], r["backend"])]
        assert row["speedup"] == pytest.approx(ref["p50_ms"] / r["p50_ms"])
        ratios = _ratios(ref["block_p50_ms"], r["block_p50_ms"])
        assert (row["speedup_lo"], row["speedup_hi"]) == (pytest.approx(min(ratios)), pytest.approx(max(ratios)))
        assert row["precision"] == r["precision"]
    assert v.loc[("m_fp32", "ort"), "verdict"] == "reference" and v.loc[("m_fp32", "trt"), "verdict"] == "reference"
    assert v.loc[("m_fp16", "ort"), "verdict"] == "faster"           # 2.5x, blocks 2.0..2.5
    assert v.loc[("m_int8", "ort"), "verdict"] == "slower"           # 0.8x, blocks 0.8..0.833
    assert v.loc[("m_bf16", "ort"), "verdict"] == "within noise"     # blocks 0.91..1.11 contain 1
    assert v.loc[("m_fp16", "trt"), "verdict"] == "faster (one block: no spread)"
    assert v.loc[("m_int8", "trt"), "verdict"] == "slower (one block: no spread)"


def test_verdict_rules_by_hand():
    assert repeat.NOISE_FLOOR == 0.03
    assert repeat._verdict(1.025, 1.025, 1.025, 5) == "within noise"   # |s - 1| <= 3 %
    assert repeat._verdict(0.975, 0.975, 0.975, 5) == "within noise"
    assert repeat._verdict(1.04, 1.035, 1.05, 5) == "faster"
    assert repeat._verdict(0.96, 0.95, 0.965, 5) == "slower"
    assert repeat._verdict(1.5, 1.0, 2.0, 3) == "within noise"      # lo == 1 is "contains 1"
    assert repeat._verdict(1.5, 0.5, 1.0, 3) == "within noise"      # hi == 1 too
    assert repeat._verdict(1.5, 0.5, 2.0, 1) == "faster (one block: no spread)"  # one block: no range rule
    assert repeat._verdict(0.5, 0.4, 1.2, 1) == "slower (one block: no spread)"
    assert repeat._verdict(1.5, 1.2, 2.0, 2) == "faster"
    assert repeat._verdict(math.nan, 1.0, 1.0, 3) == ""


def test_speed_verdicts_edge_cases():
    assert speed_verdicts(None).empty and list(speed_verdicts(pd.DataFrame()).columns)[3] == "speedup"
    no_ref = pd.DataFrame([{"variant": "a", "backend": "ort", "precision": "fp16", "p50_ms": 1.0}])
    r = speed_verdicts(no_ref).iloc[0]
    assert math.isnan(r["speedup"]) and math.isnan(r["speedup_lo"]) and r["verdict"] == ""
    zero = pd.DataFrame([{"variant": "f", "backend": "ort", "precision": "fp32", "p50_ms": 2.0},
                         {"variant": "z", "backend": "ort", "precision": "int8", "p50_ms": 0.0}])
    assert math.isnan(speed_verdicts(zero).iloc[1]["speedup"])
    # different block counts (or none): the range collapses to the speedup itself
    uneven = pd.DataFrame([{"variant": "f", "backend": "ort", "precision": "fp32", "p50_ms": 6.0, "block_p50_ms": [6.0, 6.0]},
                           {"variant": "h", "backend": "ort", "precision": "fp16", "p50_ms": 2.0, "block_p50_ms": [2.0]},
                           {"variant": "g", "backend": "ort", "precision": "int8", "p50_ms": 3.0}])
    u = speed_verdicts(uneven).set_index("variant")
    assert (u.loc["h", "speedup"], u.loc["h", "speedup_lo"], u.loc["h", "speedup_hi"]) == (3.0, 3.0, 3.0)
    assert (u.loc["g", "speedup_lo"], u.loc["g", "speedup_hi"]) == (2.0, 2.0)
    assert u.loc["h", "verdict"] == "faster (one block: no spread)"  # len(mine) == 1
    assert u.loc["g", "verdict"] == "faster (one block: no spread)"  # no blocks at all
    # a zero block median is skipped in the ratios, not divided by
    zb = pd.DataFrame([{"variant": "f", "backend": "ort", "precision": "fp32", "p50_ms": 4.0, "block_p50_ms": [4.0, 4.0, 4.0]},
                       {"variant": "h", "backend": "ort", "precision": "fp16", "p50_ms": 2.0, "block_p50_ms": [2.0, 0.0, 1.0]}])
    h = speed_verdicts(zb).iloc[1]
    assert (h["speedup_lo"], h["speedup_hi"]) == (2.0, 4.0)
    assert repeat._blocks({"block_p50_ms": np.array([1, 2])}) == [1.0, 2.0]
    assert repeat._blocks({"block_p50_ms": []}) == [] and repeat._blocks({"block_p50_ms": 3.0}) == []
    assert repeat._blocks(object()) == []


# ------------------------------------------------------------------------------------------ FlowResult.summary
def _flow():
    builds = [
        BuildEntry("m_fp32", "ort", "fp32", "ok"),
        BuildEntry("m_fp16", "ort", "fp16", "ok"),
        BuildEntry("m_int8", "ort", "int8", "ok", "calibrated"),
        BuildEntry("m_bf16", "ort", "bf16", "failed", "no kernel"),
        BuildEntry("m_fp32", "trt", "fp32", "ok"),
        BuildEntry("m_fp16", "trt", "fp16", "ok"),
    ]
    lat = LAT[LAT.variant.isin(["m_fp32", "m_fp16", "m_int8"])].reset_index(drop=True)
    acc = pd.DataFrame([
        {"variant": "m_fp32", "backend": "ort", "top1": 0.97, "cosine_min": 1.0},
        {"variant": "m_fp16", "backend": "ort", "top1": 0.965, "cosine_min": 0.99991},
        {"variant": "m_int8", "backend": "ort", "top1": "n/a", "cosine_min": float("nan")},
        {"variant": "m_fp16", "backend": "trt", "top1": 0.5, "cosine_min": 0.9},
    ])
    fr = FlowResult.empty("m", "h")
    fr.build_entries, fr.latency, fr.accuracy = builds, lat, acc
    fr.errors = [{"stage": "accuracy", "variant": "m_int8", "backend": "ort", "error": "ran out of samples"},
                 {"stage": "build", "variant": "m_bf16", "backend": "ort", "error": "bf16 unsupported"},
                 {"stage": "build", "variant": "m_bf16", "backend": "trt", "error": "not this backend"}]
    return fr


def test_flow_summary_rows_from_raw_frames():
    s = _flow().summary()
    assert list(s.columns) == SUMMARY_COLUMNS and len(s) == 6
    s = s.set_index(["variant", "backend"])
    assert s.loc[("m_fp16", "ort"), "speedup"] == pytest.approx(10.0 / 4.0)
    assert s.loc[("m_int8", "ort"), "speedup"] == pytest.approx(10.0 / 12.5)
    assert s.loc[("m_fp16", "trt"), "speedup"] == pytest.approx(2.0 / 1.0)
    assert s.loc[("m_fp16", "ort"), "speedup_lo"] == pytest.approx(2.0)
    assert s.loc[("m_fp16", "ort"), "speedup_hi"] == pytest.approx(2.5)
    assert s.loc[("m_fp16", "ort"), "speed"] == "faster" and s.loc[("m_int8", "ort"), "speed"] == "slower"
    assert s.loc[("m_fp32", "ort"), "speed"] == "reference" and s.loc[("m_fp32", "ort"), "speedup"] == 1.0
    assert s.loc[("m_fp16", "ort"), "p50_ms"] == 4.0 and s.loc[("m_fp16", "trt"), "p50_ms"] == 1.0
    # accuracy: each variant's own row on its own backend
    assert s.loc[("m_fp16", "ort"), "top1"] == 0.965 and s.loc[("m_fp16", "ort"), "cosine"] == 0.99991
    assert s.loc[("m_fp16", "trt"), "top1"] == 0.5 and s.loc[("m_fp16", "trt"), "cosine"] == 0.9
    assert s.loc[("m_fp32", "ort"), "top1"] == 0.97
    assert pd.isna(s.loc[("m_int8", "ort"), "top1"]) and pd.isna(s.loc[("m_int8", "ort"), "cosine"])
    assert pd.isna(s.loc[("m_fp32", "trt"), "top1"])  # no accuracy row for it
    # failed build: no latency; reason and the errors of this variant@backend only
    bf = s.loc[("m_bf16", "ort")]
    assert bf["status"] == "failed" and pd.isna(bf["p50_ms"]) and pd.isna(bf["speedup"]) and bf["speed"] == ""
    assert bf["reason"] == "no kernel; bf16 unsupported"
    assert s.loc[("m_int8", "ort"), "reason"] == "calibrated; ran out of samples"
    assert s.loc[("m_fp16", "ort"), "reason"] == ""


def test_flow_summary_without_latency_or_accuracy():
    fr = _flow()
    fr.latency, fr.accuracy = pd.DataFrame(), pd.DataFrame()
    fr.errors = [{"variant": "m_fp16", "backend": "ort", "error": "only error"}]
    s = fr.summary().set_index(["variant", "backend"])
    assert s["p50_ms"].isna().all() and s["speedup"].isna().all() and s["top1"].isna().all()
    assert s.loc[("m_fp16", "ort"), "reason"] == "only error"
    no_ref = _flow()
    no_ref.latency = LAT[LAT.precision != "fp32"].reset_index(drop=True)
    r = no_ref.summary().set_index(["variant", "backend"]).loc[("m_fp16", "ort")]
    assert r["p50_ms"] == 4.0 and pd.isna(r["speedup"]) and pd.isna(r["speedup_lo"]) and r["speed"] == ""


def test_summary_text_lines():
    lines = _flow().summary_text().splitlines()
    head = (f"{'variant':<28} {'backend':<13} {'p50 ms':>9} {'speedup':>8} {'top-1':>7} {'cosine':>9} "
            f"{'block range':>11}  {'speed':<12}  status")
    assert lines[0] == head and lines[1] == "-" * len(head) and len(lines) == 8
    fp16 = f"{'m_fp16':<28} {'ort':<13} {'4.0000':>9} {'2.50x':>8} {'96.50%':>7} {'0.999910':>9} {'2.00-2.50':>11}  {'faster':<12}  ok"
    assert lines[3] == fp16
    bf = f"{'m_bf16':<28} {'ort':<13} {'-':>9} {'-':>8} {'-':>7} {'-':>9} {'-':>11}  {'-':<12}  failed (no kernel; bf16 unsupported)"
    assert lines[5] == bf
    fr = _flow()
    fr.errors = [{"variant": "m_fp16", "backend": "trt", "error": "e" * 200}]
    long = [ln for ln in fr.summary_text().splitlines() if ln.startswith("m_fp16") and " trt " in ln][0]
    assert long.endswith("ok (" + "e" * 117 + "...)")
    fr.errors = [{"variant": "m_fp16", "backend": "trt", "error": "e" * 120}]
    exact = [ln for ln in fr.summary_text().splitlines() if ln.startswith("m_fp16") and " trt " in ln][0]
    assert exact.endswith("ok (" + "e" * 120 + ")")


def test_report_summary_frame_formats_the_summary():
    f = summary_frame(_flow())
    assert list(f.columns) == ["variant", "backend", "precision", "status", "p50 (ms)", "speedup vs fp32",
                               "range over blocks", "speed", "top-1 (%)", "cosine (min)", "reason"]
    r = f.set_index(["variant", "backend"])
    assert r.loc[("m_fp16", "ort"), "speedup vs fp32"] == "2.50×"
    assert r.loc[("m_int8", "ort"), "speedup vs fp32"] == "0.80×"
    assert r.loc[("m_fp16", "ort"), "range over blocks"] == "2.00–2.50×"
    assert r.loc[("m_int8", "ort"), "range over blocks"] == f"{10 / 12.5:.2f}–{10 / 12.0:.2f}×"
    assert r.loc[("m_fp16", "ort"), "top-1 (%)"] == "96.50 %" and r.loc[("m_fp16", "ort"), "cosine (min)"] == "0.999910"
    assert r.loc[("m_fp16", "ort"), "p50 (ms)"] == 4.0 and r.loc[("m_fp16", "ort"), "speed"] == "faster"
    assert r.loc[("m_fp16", "ort"), "status"] == "ok" and r.loc[("m_fp16", "ort"), "precision"] == "fp16"
    bf = r.loc[("m_bf16", "ort")]
    assert pd.isna(bf["speedup vs fp32"]) and pd.isna(bf["range over blocks"]) and pd.isna(bf["top-1 (%)"])
    assert pd.isna(bf["cosine (min)"]) and bf["reason"] == "no kernel; bf16 unsupported"
    html_ = summary_html(_flow())
    assert html_.startswith("<table><thead><tr><th>variant</th>") and "2.50×" in html_ and "2.00–2.50×" in html_


def test_report_summary_frame_nan_values_show_as_empty():
    fr = _flow()
    fr.latency = LAT[LAT.precision != "fp32"].reset_index(drop=True)
    fr.summary = lambda: pd.DataFrame([{"variant": "v", "backend": "b", "precision": "p", "status": "ok",
                                        "p50_ms": 1.0, "speedup": math.nan, "top1": math.nan, "cosine": math.nan,
                                        "reason": "", "speedup_lo": math.nan, "speedup_hi": math.nan, "speed": ""}])
    r = summary_frame(fr).iloc[0]
    assert pd.isna(r["speedup vs fp32"]) and pd.isna(r["range over blocks"])
    assert pd.isna(r["top-1 (%)"]) and pd.isna(r["cosine (min)"])


# ------------------------------------------------------------------------------------------ measure_blocks
class _Eng(Engine):
    """A plain Python engine (host timer) whose timed call appends its name to a shared log."""

    input_names = ["x"]
    output_names = ["x"]

    def __init__(self, name, log, fail_at=None):
        self.name, self.log, self.fail_at = name, log, fail_at
        self.backend = type("B", (), {"name": "fake"})()
        self.variant = type("V", (), {"name": name, "precision": "fp32"})()
        self.record = None

    def run(self, feeds):
        return dict(feeds)

    def timed_call(self, feeds):
        return TimedCall(self._call, (), "host")

    def _call(self):
        if self.fail_at is not None and len(self.log) >= self.fail_at:
            raise RunError(f"{self.name} broke")
        self.log.append(self.name)


def test_measure_blocks_interleaves_and_counts():
    log = []
    feeds = {"x": np.zeros((3, 2), np.float32)}
    a, b = _Eng("A", log), _Eng("B", log)
    res = measure_blocks([(a, feeds), (b, feeds)], blocks=3, iterations=10, warmup=5)
    per = math.ceil(10 / 3)  # 4 timed runs per block
    # block 0: 5 warm-up + 4 timed for A, then B; later blocks: min(2, warmup) warm-up + 4 timed
    expected = ["A"] * (5 + per) + ["B"] * (5 + per) + (["A"] * (2 + per) + ["B"] * (2 + per)) * 2
    assert log == expected
    for r, medians in res:
        assert len(r.times_ms) == 3 * per and r.requested_iterations == 3 * per and len(medians) == 3
        assert r.stats["iterations"] == 3 * per and r.stats["p50_ms"] == pytest.approx(np.percentile(r.times_ms, 50))
        assert medians[0] == pytest.approx(np.median(r.times_ms[:per]))
        assert medians[2] == pytest.approx(np.median(r.times_ms[2 * per:]))
        assert r.batch == 3
    df = blocks_frame(res)
    assert df["blocks"].tolist() == [3, 3] and df["variant"].tolist() == ["A", "B"]
    assert df["p50_lo_ms"].tolist() == [min(m) for _, m in res] and df["p50_hi_ms"].tolist() == [max(m) for _, m in res]
    assert df["block_p50_ms"].tolist() == [list(m) for _, m in res]


def test_measure_blocks_warmup_below_two_and_minimum_counts():
    log = []
    res = measure_blocks([(_Eng("A", log), {"x": np.zeros(1)})], blocks=0, iterations=0, warmup=1)
    assert log == ["A", "A"]  # one block (at least), one timed run (at least), warm-up 1
    assert res[0][0].requested_iterations == 1
    log.clear()
    measure_blocks([(_Eng("A", log), {"x": np.zeros(1)})], blocks=2, iterations=2, warmup=1)
    assert log == ["A"] * 4  # later blocks warm up min(2, 1) = 1


def test_measure_blocks_a_failing_engine_is_left_out_of_later_blocks():
    log = []
    a, bad = _Eng("A", log), _Eng("X", log, fail_at=0)
    res = measure_blocks([(bad, {"x": np.zeros(1)}), (a, {"x": np.zeros(1)})], blocks=2, iterations=2, warmup=0)
    assert res[0][0] is None and isinstance(res[0][1], RunError) and "X broke" in str(res[0][1])
    assert res[1][0] is not None and log == ["A", "A"]
    assert len(blocks_frame(res)) == 1


def test_measure_blocks_progress_bar_counts_blocks(monkeypatch):
    bars = []

    class Bar:
        def __init__(self):
            self.n, self.closed = 0, False

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    def fake_bar(total, enabled):
        assert total == 6 and enabled is True
        bars.append(Bar())
        return bars[-1]

    real_bar = repeat._bar
    monkeypatch.setattr(repeat, "_bar", fake_bar)
    log = []
    measure_blocks([(_Eng("A", log), {"x": np.zeros(1)}), (_Eng("B", log), {"x": np.zeros(1)})],
                   blocks=3, iterations=3, warmup=0, progress=True)
    assert bars[0].n == 6 and bars[0].closed
    assert real_bar(3, False) is None
    real = real_bar(4, True)
    try:
        assert real.total == 4 and real.desc == "latency blocks" and real.unit == "block" and real.leave is True
    finally:
        real.close()


# ------------------------------------------------------------------------------------------ survivors of the first run
def test_two_blocks_already_have_a_range():
    assert repeat._verdict(1.5, 0.9, 2.0, 2) == "within noise"


def test_blocks_on_one_side_only_collapse_the_range():
    lat = pd.DataFrame([{"variant": "f", "backend": "ort", "precision": "fp32", "p50_ms": 6.0},
                        {"variant": "h", "backend": "ort", "precision": "fp16", "p50_ms": 2.0, "block_p50_ms": [2.0, 2.1]}])
    h = speed_verdicts(lat).iloc[1]
    assert (h["speedup"], h["speedup_lo"], h["speedup_hi"]) == (3.0, 3.0, 3.0)


def test_measure_blocks_defaults_and_batch(monkeypatch):
    seen = []
    real = repeat._bar
    monkeypatch.setattr(repeat, "_bar", lambda total, enabled: seen.append(enabled) or real(total, enabled))
    log = []
    res = measure_blocks([(_Eng("A", log), {"x": np.zeros((3, 2), np.float32)})])
    per = math.ceil(100 / 5)
    assert len(log) == (10 + per) + 4 * (2 + per) and seen == [False]
    r = res[0][0]
    assert r.requested_iterations == 5 * per and len(res[0][1]) == 5
    assert r.stats["batch"] == 3 and r.stats["throughput"] == pytest.approx(3 * 1000 / np.mean(r.times_ms))


def test_summary_edges_found_by_mutation():
    assert list(FlowResult.empty("m", "h").summary().columns) == SUMMARY_COLUMNS  # no builds: still the columns
    fr = _flow()
    fr.errors = [{"variant": "m_fp16", "backend": "trt", "error": "XLA said X"}]
    s = fr.summary().set_index(["variant", "backend"])
    assert s.loc[("m_fp16", "trt"), "reason"] == "XLA said X"  # only '; ' is stripped from the ends
    fr.errors = [{"variant": "m_fp16", "backend": "trt", "error": "e" * 121}]
    line = [ln for ln in fr.summary_text().splitlines() if ln.startswith("m_fp16") and " trt " in ln][0]
    assert line.endswith("ok (" + "e" * 117 + "...)")  # over 120 characters: cut
    none = _flow()
    none.accuracy = pd.DataFrame()
    text = none.summary_text()  # no accuracy at all: top-1 and cosine show as '-'
    fp16 = [ln for ln in text.splitlines() if ln.startswith("m_fp16") and " ort " in ln][0]
    assert fp16 == (f"{'m_fp16':<28} {'ort':<13} {'4.0000':>9} {'2.50x':>8} {'-':>7} {'-':>9} "
                    f"{'2.00-2.50':>11}  {'faster':<12}  ok")
