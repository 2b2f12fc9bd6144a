"""Latency measurement (workbench.measure.latency) on real ONNX Runtime CPU sessions.

No timing assertions here (timings go in bench/bench_latency.py): these check counts, statistics
invariants, the time budget, records and frames.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.backends import get_backend
from workbench.backends.base import BuildOptions, Engine, TimedCall
from workbench.data import synthetic_inputs
from workbench.errors import RunError, UsageError
from workbench.measure.latency import FRAME_COLUMNS, LatencyResult, latency_frame, latency_stats, measure_latency
from workbench.model import load
from workbench.records import load_record
from workbench.variant import Variant


@pytest.fixture
def digits(sample):
    m = load(sample("digits_cnn.onnx"))
    eng = get_backend("onnxruntime").build(Variant.of(m), None, BuildOptions(progress=False))
    return eng, synthetic_inputs(m, batch=32)


def test_stats_are_ordered_and_counts_honoured(digits):
    eng, feeds = digits
    r = measure_latency(eng, feeds, warmup=2, iterations=25)
    s = r.stats
    assert s["iterations"] == 25 == len(r.times_ms)
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["min_ms"] > 0
    assert s["batch"] == 32 == r.batch
    assert s["throughput"] == pytest.approx(32 * 1000 / s["mean_ms"])
    assert s["mean_ms"] == pytest.approx(float(np.mean(r.times_ms)))
    assert r.timer == "host" and r.backend == "onnxruntime" and r.precision == "fp32"
    assert r.variant == eng.variant.name


def test_stats_match_numpy_on_known_times():
    t = [1.0, 2.0, 3.0, 4.0, 10.0]
    s = latency_stats(t, batch=4)
    assert s["p50_ms"] == 3.0 and s["min_ms"] == 1.0 and s["max_ms"] == 10.0
    assert s["p90_ms"] == pytest.approx(np.percentile(t, 90))
    assert s["std_ms"] == pytest.approx(np.std(t))
    assert s["throughput"] == pytest.approx(4 * 1000 / 4.0)
    with pytest.raises(RunError):
        latency_stats([], 1)


def test_time_budget_stops_early(digits):
    eng, feeds = digits
    r = measure_latency(eng, feeds, warmup=1, iterations=1_000_000, time_budget_s=0.05)
    assert 1 <= r.stats["iterations"] < 1_000_000
    r2 = measure_latency(eng, feeds, warmup=0, iterations=None, time_budget_s=0.02)
    assert r2.stats["iterations"] >= 1 and r2.requested_iterations is None


def test_frame_and_json_roundtrip(digits, tmp_path):
    eng, feeds = digits
    r = measure_latency(eng, feeds, warmup=1, iterations=10)
    df = r.to_frame()
    assert list(df.columns) == FRAME_COLUMNS and len(df) == 1
    assert df.loc[0, "p50_ms"] == r.stats["p50_ms"]
    p = r.save(tmp_path / "lat.json")
    back = load_record(p)
    assert isinstance(back, LatencyResult)
    assert back.stats == r.stats and back.times_ms == r.times_ms and back.timer == r.timer
    assert json.loads(p.read_text())["kind"] == "latency"
    both = latency_frame([r, back])
    assert len(both) == 2 and (both["p50_ms"] == r.stats["p50_ms"]).all()
    times = r.times_frame()
    assert len(times) == 10 and times["time_ms"].tolist() == r.times_ms


def test_progress_bar_does_not_change_counts(digits):
    eng, feeds = digits
    r = measure_latency(eng, feeds, warmup=0, iterations=120, progress=True)
    assert r.stats["iterations"] == 120


@pytest.mark.parametrize("kw", [{"iterations": 0}, {"iterations": -3}, {"warmup": -1},
                                {"iterations": None}, {"time_budget_s": 0}])
def test_bad_counts_are_usage_errors(digits, kw):
    eng, feeds = digits
    with pytest.raises(UsageError):
        measure_latency(eng, feeds, **kw)


def test_missing_input_is_a_clear_error(digits):
    eng, _ = digits
    with pytest.raises(RunError, match="image"):
        measure_latency(eng, {}, iterations=1)


@pytest.mark.gpu
def test_ort_cuda_uses_device_binding(sample):
    """ORT CUDA: inputs bound on the GPU once; timer is cuda-events or host-sync (see docs/profiling.md)."""
    b = get_backend("onnxruntime-cuda")
    ok, why = b.available()
    if not ok:
        pytest.skip(f"ONNX Runtime CUDA not usable here: {why}")
    m = load(sample("digits_cnn.onnx"))
    eng = b.build(Variant.of(m), None, BuildOptions(progress=False))
    r = measure_latency(eng, synthetic_inputs(m, batch=32), warmup=3, iterations=20)
    assert r.timer in ("cuda-events", "host-sync") and r.stats["iterations"] == 20


@pytest.mark.gpu
@pytest.mark.trt
def test_tensorrt_uses_cuda_events(trt_backend, sample):
    b = trt_backend
    m = load(sample("digits_cnn.onnx"))
    eng = b.build(Variant.of(m), "image:32x1x8x8", BuildOptions(progress=False))
    r = measure_latency(eng, synthetic_inputs(m, batch=32), warmup=3, iterations=20)
    assert r.timer == "cuda-events" and r.stats["iterations"] == 20
    assert r.stats["min_ms"] > 0


class _StreamWork(Engine):
    """Not TensorRT: an engine whose ``timed_call`` enqueues device work (``cudaMemsetAsync`` of a buffer) on
    its own CUDA stream with timer ``cuda-events`` — the contract ``measure_latency`` times with CUDA events."""

    input_names: list = []
    output_names: list = []

    def __init__(self, rt, nbytes: int):
        self.rt, self.nbytes = rt, nbytes
        self.backend = type("StreamBackend", (), {"name": "cuda-memset"})()
        self.variant = type("StreamVariant", (), {"name": "memset", "precision": ""})()
        self.record = None
        err, self.stream = rt.cudaStreamCreate()
        assert int(err) == 0
        err, self.ptr = rt.cudaMalloc(nbytes)
        assert int(err) == 0

    def run(self, feeds):
        self.enqueue()
        self.synchronize()
        return {}

    def timed_call(self, feeds):
        return TimedCall(self.enqueue, (), "cuda-events", self.stream)

    def enqueue(self):
        (err,) = self.rt.cudaMemsetAsync(self.ptr, 1, self.nbytes, self.stream)
        assert int(err) == 0

    def synchronize(self):
        (err,) = self.rt.cudaStreamSynchronize(self.stream)
        assert int(err) == 0

    def close(self):
        self.rt.cudaFree(self.ptr)
        self.rt.cudaStreamDestroy(self.stream)


@pytest.mark.gpu
def test_cuda_event_timer_on_a_stream():
    """The cuda-events path of measure_latency (used for TensorRT engines) on a real GPU stream."""
    import time

    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python not installed")
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip(f"no CUDA device here ({err})")
    work = _StreamWork(rt, 256 << 20)
    try:
        t0 = time.perf_counter()
        r = measure_latency(work, {}, warmup=3, iterations=30)
        wall_ms = (time.perf_counter() - t0) * 1e3
        assert r.timer == "cuda-events" and r.stats["iterations"] == 30
        assert r.stats["min_ms"] > 0
        assert sum(r.times_ms) <= wall_ms  # events bracket device work inside the host loop
        budget = measure_latency(work, {}, warmup=0, iterations=None, time_budget_s=0.05)
        assert budget.stats["iterations"] >= 1
    finally:
        work.close()
