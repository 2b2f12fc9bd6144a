"""Independent oracles (issue 23): each number the library reports is recomputed here from raw inputs the
test controls, with numpy or by hand — never with the library's own helper for the same quantity.

Each test names the planted bug it exists to catch.
"""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

import workbench as wb
from workbench.backends import get_backend
from workbench.backends.base import BuildOptions, Engine, TimedCall
from workbench.errors import ExternalDataError
from workbench.measure.latency import latency_stats, measure_latency
from workbench.variant import Variant

from conftest import SAMPLES


# --------------------------------------------------------------------------------------------- latency
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latency_stats_match_numpy_on_skewed_samples(seed):
    """Catches: p99 silently equal to p90, a wrong interpolation, throughput inverted, std of the wrong kind."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([rng.gamma(2.0, 0.5, 990), rng.uniform(20, 40, 10)])  # a long tail: p99 >> p90
    rng.shuffle(t)
    s = latency_stats(t, batch=8)
    assert s["p50_ms"] == pytest.approx(np.percentile(t, 50))
    assert s["p90_ms"] == pytest.approx(np.percentile(t, 90))
    assert s["p99_ms"] == pytest.approx(np.percentile(t, 99))
    assert s["p99_ms"] > 2 * s["p90_ms"]
    assert s["mean_ms"] == pytest.approx(t.mean()) and s["std_ms"] == pytest.approx(t.std(ddof=0))
    assert (s["min_ms"], s["max_ms"]) == (pytest.approx(t.min()), pytest.approx(t.max()))
    assert s["throughput"] == pytest.approx(8 * 1000.0 / t.mean())   # samples per second
    assert s["iterations"] == t.size


class _CountingEngine(Engine):
    """A real ONNX Runtime engine, with its timed call counted (only the counting is added)."""

    def __init__(self, inner):
        self.inner, self.backend, self.variant, self.record = inner, inner.backend, inner.variant, inner.record
        self.calls = 0

    input_names = property(lambda self: self.inner.input_names)
    output_names = property(lambda self: self.inner.output_names)

    def run(self, feeds):
        return self.inner.run(feeds)

    def timed_call(self, feeds):
        call = self.inner.timed_call(feeds)

        def counted(*a):
            self.calls += 1
            return call.fn(*a)

        return TimedCall(counted, call.args, call.timer, call.stream, call.cleanup, call.scope)


def test_measure_latency_runs_the_warmup_and_times_only_the_rest():
    """Catches: warm-up skipped, warm-up iterations counted as timed ones."""
    model = wb.load(SAMPLES / "digits_cnn.onnx")
    eng = _CountingEngine(get_backend("onnxruntime").build(Variant.of(model), None, BuildOptions(progress=False)))
    feeds = {"image": np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)}
    res = measure_latency(eng, feeds, warmup=7, iterations=13)
    assert eng.calls == 7 + 13
    assert len(res.times_ms) == 13 and res.stats["iterations"] == 13 and res.warmup == 7
    assert res.stats["p50_ms"] == pytest.approx(np.percentile(res.times_ms, 50))


# --------------------------------------------------------------------------------------------- coverage
def test_coverage_of_a_hand_made_case():
    """Catches: the coverage goal moved (0.9 → 0.5), the ratio inverted, p50 used where the mean is asked."""
    from workbench.measure.latency import LatencyResult
    from workbench.measure.layers import coverage

    times = [10.0] * 9 + [40.0]  # mean 13, p50 10
    lat = LatencyResult(variant="v", times_ms=times)
    layers = pd.DataFrame({"variant": ["v"] * 3, "time_ms": [4.0, 3.0, 2.0]})  # Σ 9
    c = coverage(layers, lat)
    assert c.ratio == pytest.approx(9 / 13) and c.flagged                # 0.69 < 0.9
    layers2 = pd.DataFrame({"variant": ["v"] * 2, "time_ms": [6.0, 6.0]})  # Σ 12 -> 0.923: inside 0.9..1.1
    assert not coverage(layers2, lat).flagged
    layers3 = pd.DataFrame({"variant": ["v"], "time_ms": [11.4]})          # 0.877: just under 0.9
    assert coverage(layers3, lat).flagged
    assert coverage(layers2, lat, stat="p50_ms").ratio == pytest.approx(12 / 10)


# --------------------------------------------------------------------------------------------- flow summary
@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow")
    for n in ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz"):
        shutil.copy(SAMPLES / n, d / n)
    return wb.run_flow(d / "digits_cnn.onnx", "fp32,fp16,int8", data=d / "digits_test.npz", labels="label",
                       calib=d / "digits_calib.npz", iterations=20, warmup=2, layer_iterations=2,
                       layerwise=False, progress=False)


def test_summary_speedup_is_fp32_p50_over_variant_p50(flow):
    """Catches: speedup inverted in the summary/report, every variant compared with itself."""
    s = flow.summary().set_index("precision")
    lat = flow.latency.set_index("precision")
    for p in ("fp16", "int8"):
        expected = float(lat.loc["fp32", "p50_ms"]) / float(lat.loc[p, "p50_ms"])
        assert s.loc[p, "speedup"] == pytest.approx(expected, rel=0.25)  # block-median estimate vs one p50
        assert (s.loc[p, "speedup"] > 1) == (expected > 1) or abs(expected - 1) < 0.15
    assert s.loc["fp32", "speedup"] == pytest.approx(1.0)


def test_summary_accuracy_is_each_variants_own(flow):
    """Catches: every variant shown with the first variant's accuracy. The oracle runs each variant's own
    graph (a fresh ONNX Runtime session) over the flow's own samples and recomputes top-1 and the cosine."""
    s = flow.summary().set_index("precision")
    bs = flow.buildsets["onnxruntime"]
    feeds = flow.batches
    labels = np.asarray(flow.labels)
    outs = {}
    for r in bs.results:
        eng = get_backend("onnxruntime").build(r.variant, None, BuildOptions(progress=False))
        outs[r.precision] = np.concatenate([eng.run(f)["logits"] for f in feeds]).astype(np.float64)
    assert len(outs) == 3
    ref = outs["fp32"]
    tops = {}
    for p in ("fp32", "fp16", "int8"):
        o = outs[p]
        tops[p] = float(np.mean(o.argmax(1) == labels))
        assert s.loc[p, "top1"] == pytest.approx(tops[p], abs=1e-9), p
        cos = float((o * ref).sum() / np.sqrt((o * o).sum() * (ref * ref).sum()))
        assert s.loc[p, "cosine"] == pytest.approx(cos, abs=5e-4), p
    # int8 really differs from fp32 on this model, so a copied value would be caught above
    assert not np.allclose(outs["int8"], outs["fp32"])


# --------------------------------------------------------------------------------------------- external data
def test_dotdot_inside_the_folder_is_refused_by_the_dotdot_rule(tmp_path):
    """Catches: the `..` check removed (``a/../w.bin`` resolves inside the folder, so no other check refuses it)."""
    m = onnx.load(str(SAMPLES / "digits_cnn.onnx"))
    big = numpy_helper.from_array(np.ones((64, 64), np.float32), "extra_w")
    m.graph.initializer.append(big)
    folder = tmp_path / "m"
    (folder / "a").mkdir(parents=True)
    onnx.save_model(m, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.bin", size_threshold=1024)
    wb.load(folder / "model.onnx")  # plain location: fine
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "a/../w.bin"
    (folder / "model.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(ExternalDataError, match=r"\.\."):
        wb.load(folder / "model.onnx")
