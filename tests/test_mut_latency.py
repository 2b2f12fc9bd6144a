"""Tests written against mutants of workbench/measure/latency.py that survived `make mutate` (issue 23).

Every expected value is computed here from inputs the test controls: a deterministic clock (a stand-in for
``time.perf_counter_ns`` that advances only when the timed function runs), a plain Python engine that
implements the public :class:`~workbench.backends.base.Engine` contract, and — in the ``test_cuda_standin_*``
tests — a stand-in for the CUDA runtime calls only (event create/record/synchronize/elapsed/destroy), clearly
not a GPU. The real CUDA-events path runs in tests/test_latency.py::test_cuda_event_timer_on_a_stream (``-m gpu``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.backends.base import Engine, TimedCall
from workbench.errors import BackendUnavailable, RunError, UsageError, WorkbenchError
from workbench.measure import latency as lat
from workbench.measure.latency import FRAME_COLUMNS, LatencyResult, latency_frame, latency_stats, measure_latency


class _Clock:
    """perf_counter_ns that moves only when the timed function runs: iteration k takes ``steps[k]`` ns."""

    def __init__(self, steps_ns):
        self.now, self.steps, self.k = 1_000_000, list(steps_ns), 0

    def __call__(self):
        return self.now

    def work(self, *args):
        self.now += self.steps[self.k % len(self.steps)]
        self.k += 1


class _Bar:
    def __init__(self):
        self.updates, self.closed = [], False

    def update(self, n):
        self.updates.append(n)

    def close(self):
        self.closed = True


class _HostEngine(Engine):
    """A pure-Python engine honouring the Engine contract (timed with host timers); counts what is called."""

    input_names = ["x"]
    output_names = ["y"]

    def __init__(self, fn, *, name="v1", precision="fp16", backend="fake-host", device=None, timer="host",
                 scope="", prepare_error=None):
        self.fn, self.timer, self.scope, self.prepare_error = fn, timer, scope, prepare_error
        self.backend = type("B", (), {"name": backend})()
        self.variant = type("V", (), {"name": name, "precision": precision})()
        self.record = type("R", (), {"device": device or {}})()
        self.syncs = self.cleanups = 0

    def run(self, feeds):
        return {"y": feeds["x"]}

    def timed_call(self, feeds):
        if self.prepare_error is not None:
            raise self.prepare_error
        return TimedCall(self.fn, (feeds["x"],), self.timer, getattr(self, "stream", 0), self._cleanup, self.scope)

    def _cleanup(self):
        self.cleanups += 1

    def synchronize(self):
        self.syncs += 1


@pytest.fixture
def clock(monkeypatch):
    c = _Clock([2_000_000, 3_000_000, 5_000_000])  # 2, 3, 5 ms, repeating
    monkeypatch.setattr(lat.time, "perf_counter_ns", c)
    return c


# ------------------------------------------------------------------------------------------ host timer
def test_host_timer_records_each_iterations_own_interval(clock):
    bar = _Bar()
    t = lat._host_timed(clock.work, (), 120, None, bar)
    expected = np.array([[2.0, 3.0, 5.0][k % 3] for k in range(120)])
    np.testing.assert_array_equal(t, expected)
    assert clock.k == 120
    assert bar.updates == [50, 50, 20]  # once per chunk of 50, the remainder last


def test_host_timer_without_a_bar_runs_all_iterations(clock):
    t = lat._host_timed(clock.work, (), 7, None, None)
    assert t.tolist() == [2.0, 3.0, 5.0, 2.0, 3.0, 5.0, 2.0] and clock.k == 7


def test_host_timer_budget_stops_after_the_call_that_passes_it(clock):
    bar = _Bar()
    # deadline = start + 9 ms; calls end at 2, 5, 10 ms: the third passes it, so 3 iterations
    t = lat._host_timed(clock.work, (), 100, 9_000_000, bar)
    assert t.tolist() == [2.0, 3.0, 5.0] and clock.k == 3 and bar.updates == [3]
    # a call that ends exactly on the deadline also stops the loop (>=)
    c2 = _Clock([2_000_000])
    lat.time.perf_counter_ns = c2
    assert lat._host_timed(c2.work, (), 100, 4_000_000, None).tolist() == [2.0, 2.0]


def test_host_timer_budget_never_reached_runs_n(clock):
    bar = _Bar()
    t = lat._host_timed(clock.work, (), 4, 10**12, bar)
    assert t.tolist() == [2.0, 3.0, 5.0, 2.0] and bar.updates == [4]


def test_progress_bar_is_a_tqdm_with_the_given_total_and_label():
    assert lat._progress(5, False, "x") is None
    bar = lat._progress(17, True, "latency v1")
    try:
        assert bar.total == 17 and bar.desc == "latency v1" and bar.unit == "it" and bar.leave is False
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------ measure_latency
def test_measure_latency_record_fields_from_raw_inputs(clock):
    eng = _HostEngine(clock.work, device={"name": "Fake CPU", "type": "cpu"})
    feeds = {"x": np.zeros((6, 3), np.float32)}
    r = measure_latency(eng, feeds, warmup=4, iterations=5)
    assert clock.k == 9  # 4 warm-up + 5 timed calls
    assert r.times_ms == [3.0, 5.0, 2.0, 3.0, 5.0]  # the warm-up took the first four steps (2,3,5,2)
    assert (r.variant, r.backend, r.precision, r.batch, r.warmup) == ("v1", "fake-host", "fp16", 6, 4)
    assert r.requested_iterations == 5 and r.time_budget_s is None
    assert r.device == {"name": "Fake CPU", "type": "cpu"} and r.timer == "host"
    assert r.timer_scope == "host wall time of one synchronous run"
    t = np.array(r.times_ms)
    assert r.stats["p50_ms"] == pytest.approx(np.percentile(t, 50)) and r.stats["batch"] == 6
    assert r.stats["throughput"] == pytest.approx(6 * 1000 / t.mean())
    assert eng.syncs == 1 and eng.cleanups == 1  # synchronized once after the warm-up; cleanup ran


def test_measure_latency_scope_from_the_engine_wins_and_no_warmup_no_sync(clock):
    eng = _HostEngine(clock.work, timer="host-sync", scope="my own words")
    r = measure_latency(eng, {"x": np.zeros((2,), np.float32)}, warmup=0, iterations=3)
    assert r.timer_scope == "my own words" and r.timer == "host-sync" and eng.syncs == 0
    eng2 = _HostEngine(clock.work, timer="host-sync")
    r2 = measure_latency(eng2, {"x": np.zeros((2,), np.float32)}, warmup=0, iterations=1)
    assert r2.timer_scope == "host wall time of one run that synchronizes its stream"


def test_measure_latency_budget_is_recorded_and_honoured(clock):
    eng = _HostEngine(clock.work)
    r = measure_latency(eng, {"x": np.zeros((1,), np.float32)}, warmup=0, iterations=None, time_budget_s=0.009)
    assert r.times_ms == [2.0, 3.0, 5.0] and r.requested_iterations is None and r.time_budget_s == 0.009


def test_measure_latency_progress_bar_closes(clock, monkeypatch):
    bars = []

    def fake_progress(total, enabled, desc):
        assert enabled is True and desc == "latency v1" and total == 60
        bars.append(_Bar())
        return bars[-1]

    monkeypatch.setattr(lat, "_progress", fake_progress)
    measure_latency(_HostEngine(clock.work), {"x": np.zeros((1,), np.float32)}, warmup=0, iterations=60,
                    progress=True)
    assert bars[0].updates == [50, 10] and bars[0].closed


def test_measure_latency_failures_are_run_errors_that_keep_the_cause(clock):
    feeds = {"x": np.zeros((1,), np.float32)}

    def boom(*a):
        raise ValueError("bad input shape")

    with pytest.raises(RunError, match="v1 failed during warm-up: bad input shape") as e:
        measure_latency(_HostEngine(boom), feeds, warmup=1, iterations=1)
    assert isinstance(e.value.__cause__, ValueError)
    eng = _HostEngine(boom)
    with pytest.raises(RunError, match="v1 failed while being timed: bad input shape"):
        measure_latency(eng, feeds, warmup=0, iterations=2)
    assert eng.cleanups == 1  # cleanup runs even when timing fails
    with pytest.raises(RunError, match="v1 could not be prepared for timing: no device memory"):
        measure_latency(_HostEngine(clock.work, prepare_error=MemoryError("no device memory")), feeds, iterations=1)
    own = UsageError("a WorkbenchError passes through unchanged")
    with pytest.raises(UsageError) as e2:
        measure_latency(_HostEngine(clock.work, prepare_error=own), feeds, iterations=1)
    assert e2.value is own

    def wb_error(*a):
        raise own

    with pytest.raises(UsageError) as e3:
        measure_latency(_HostEngine(wb_error), feeds, warmup=0, iterations=1)
    assert e3.value is own


def test_measure_latency_unnamed_engine_says_engine(clock):
    def boom(*a):
        raise ValueError("x")

    with pytest.raises(RunError, match="^engine failed during warm-up"):
        measure_latency(_HostEngine(boom, name=""), {"x": np.zeros(1)}, warmup=1, iterations=1)
    with pytest.raises(RunError, match="^engine failed while being timed"):
        measure_latency(_HostEngine(boom, name=""), {"x": np.zeros(1)}, warmup=0, iterations=1)
    with pytest.raises(RunError, match="^engine could not be prepared"):
        measure_latency(_HostEngine(boom, name="", prepare_error=OSError("y")), {"x": np.zeros(1)}, iterations=1)


@pytest.mark.parametrize("kw,ok", [({"warmup": 0, "iterations": 1}, True), ({"warmup": True}, False),
                                   ({"iterations": True}, False), ({"warmup": 1.5}, False),
                                   ({"iterations": 2.0}, False), ({"iterations": np.int64(3)}, True),
                                   ({"warmup": np.int32(2), "iterations": 1}, True),
                                   ({"iterations": 1, "time_budget_s": -1.0}, False),
                                   ({"iterations": 1, "time_budget_s": float("nan")}, False),
                                   ({"iterations": 1, "time_budget_s": 1e-9}, True)])
def test_count_checks(clock, kw, ok):
    eng = _HostEngine(clock.work)
    if ok:
        measure_latency(eng, {"x": np.zeros(1)}, **kw)
    else:
        with pytest.raises(UsageError):
            measure_latency(eng, {"x": np.zeros(1)}, **kw)


def test_budget_without_iterations_caps_at_the_maximum():
    assert lat._check_counts(0, None, 1.0) == lat.MAX_BUDGET_ITERATIONS == 1_000_000
    assert lat._check_counts(0, 7, None) == 7


# ------------------------------------------------------------------------------------------ records and frames
def _result(**kw):
    base = dict(variant="a", backend="onnxruntime", precision="int8", batch=4, timer="cuda-events",
                times_ms=[1.0, 2.0, 4.0], device={"name": "GPU X", "type": "cuda"})
    base.update(kw)
    return LatencyResult(**base)


def test_row_and_frame_hold_the_stats_of_the_raw_times():
    r = _result()
    t = np.array([1.0, 2.0, 4.0])
    row = r.to_row()
    assert sorted(row) == sorted(FRAME_COLUMNS)
    assert row["variant"] == "a" and row["backend"] == "onnxruntime" and row["precision"] == "int8"
    assert row["batch"] == 4 and row["timer"] == "cuda-events" and row["device"] == "GPU X"
    assert row["p50_ms"] == 2.0 and row["p90_ms"] == pytest.approx(np.percentile(t, 90))
    assert row["p99_ms"] == pytest.approx(np.percentile(t, 99)) and row["mean_ms"] == pytest.approx(7 / 3)
    assert row["std_ms"] == pytest.approx(t.std()) and (row["min_ms"], row["max_ms"]) == (1.0, 4.0)
    assert row["throughput"] == pytest.approx(4 * 1000 / (7 / 3)) and row["iterations"] == 3
    df = r.to_frame()
    assert list(df.columns) == FRAME_COLUMNS and df.iloc[0].to_dict() == row
    assert _result(device={"type": "cpu"}).to_row()["device"] == "cpu"
    assert _result(device={}).to_row()["device"] == ""


def test_latency_frame_rows_in_order():
    a, b = _result(), _result(variant="b", times_ms=[3.0])
    f = latency_frame([a, b])
    assert list(f.columns) == FRAME_COLUMNS and f["variant"].tolist() == ["a", "b"]
    assert f["p50_ms"].tolist() == [2.0, 3.0]
    assert list(latency_frame([]).columns) == FRAME_COLUMNS


def test_times_frame_one_row_per_iteration():
    f = _result().times_frame()
    assert list(f.columns) == ["variant", "backend", "precision", "iteration", "time_ms"]
    assert f["iteration"].tolist() == [0, 1, 2] and f["time_ms"].tolist() == [1.0, 2.0, 4.0]
    assert set(f["variant"]) == {"a"} and set(f["backend"]) == {"onnxruntime"} and set(f["precision"]) == {"int8"}


def test_stats_computed_once_and_kept():
    r = _result()
    assert r.p50_ms == 2.0 and isinstance(r.p50_ms, float)
    kept = LatencyResult(times_ms=[1.0, 9.0], stats={"p50_ms": 42.0})
    assert kept.stats == {"p50_ms": 42.0}  # given stats are not recomputed
    assert LatencyResult().stats == {}


def test_repr_names_the_numbers():
    text = repr(_result())
    assert text == "<LatencyResult a on onnxruntime: p50 2.000 ms, p99 3.960 ms, n=3 (cuda-events)>"
    assert "p50 nan ms, p99 nan ms, n=None" in repr(LatencyResult())


def test_stats_throughput_and_types():
    s = latency_stats(np.array([2.0, 2.0]), batch=3)
    assert s["throughput"] == 1500.0 and s["batch"] == 3 and type(s["iterations"]) is int
    assert latency_stats([0.0, 0.0])["throughput"] == math.inf
    assert list(s) == list(lat.STAT_KEYS)


# ------------------------------------------------------------------------------------------ CUDA events
class _CudaRtStandIn:
    """A stand-in for the CUDA runtime calls CudaEvents makes — not a GPU. Each recorded event pair is given
    ``elapsed[k]`` ms; ``fail`` names a call that returns an error code instead."""

    class cudaError_t:  # noqa: N801 - mirrors cuda.bindings.runtime
        cudaSuccess = 0

    def __init__(self, elapsed, fail=None, clock=None):
        self.elapsed, self.fail, self.clock = list(elapsed), fail, clock
        self.created, self.destroyed, self.records, self.k = 0, [], [], 0
        self.synced, self.pairs = [], []

    def cudaEventCreate(self):
        self.created += 1
        if self.fail == f"create{self.created}":
            return (3, None)
        return (0, f"ev{self.created}")

    def cudaEventRecord(self, ev, stream):
        self.records.append((ev, stream))
        return (0,)

    def cudaEventSynchronize(self, ev):
        self.synced.append(ev)
        return (700 if self.fail == "sync" else 0,)

    def cudaEventElapsedTime(self, e0, e1):
        self.pairs.append((e0, e1))
        if self.fail == "elapsed":
            return (600, None)
        ms = self.elapsed[self.k % len(self.elapsed)]
        self.k += 1
        if self.clock is not None:
            self.clock.now += int(ms * 1e6)
        return (0, ms)

    def cudaEventDestroy(self, ev):
        self.destroyed.append(ev)
        return (0,)


def test_cuda_standin_events_time_each_iteration(monkeypatch):
    rt = _CudaRtStandIn([0.5, 0.25, 1.0])
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    ev = lat.CudaEvents(stream="s7")
    assert (ev.start, ev.end, ev.stream) == ("ev1", "ev2", "s7")
    calls = []
    bar = _Bar()
    t = ev.timed(lambda *a: calls.append(a), ("in",), 55, None, bar)
    assert t.tolist() == [[0.5, 0.25, 1.0][k % 3] for k in range(55)]
    assert len(calls) == 55 and calls[0] == ("in",)
    assert rt.records[:2] == [("ev1", "s7"), ("ev2", "s7")] and len(rt.records) == 110
    assert bar.updates == [50, 5]
    assert set(rt.synced) == {"ev2"} and set(rt.pairs) == {("ev1", "ev2")}  # wait on the end event; start->end
    ev.close()
    assert rt.destroyed == ["ev1", "ev2"]


def test_cuda_standin_events_budget(monkeypatch):
    clock = _Clock([0])
    monkeypatch.setattr(lat.time, "perf_counter_ns", clock)
    rt = _CudaRtStandIn([2.0], clock=clock)  # each iteration moves the host clock by its 2 ms
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    ev = lat.CudaEvents()
    bar = _Bar()
    t = ev.timed(lambda: None, (), 1000, 5_000_000, bar)  # 2, 4, 6 ms: the third call passes 5 ms
    assert t.tolist() == [2.0, 2.0, 2.0] and bar.updates == [3]
    rt2 = _CudaRtStandIn([2.0], clock=clock)
    monkeypatch.setattr(lat, "_cudart", lambda: rt2)
    t2 = lat.CudaEvents().timed(lambda: None, (), 120, 200_000_000, None)  # budget spans chunks: 100 calls
    assert len(t2) == 100


@pytest.mark.parametrize("fail,msg", [("sync", "cudaEventSynchronize failed: 700"),
                                      ("elapsed", "cudaEventElapsedTime failed: 600")])
def test_cuda_standin_event_errors_are_run_errors(monkeypatch, fail, msg):
    rt = _CudaRtStandIn([1.0], fail=fail)
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    with pytest.raises(RunError, match=msg):
        lat.CudaEvents().timed(lambda: None, (), 3, None, None)


def test_cuda_standin_check_unpacks_results():
    class E:
        def __init__(self, v):
            self.value = v

        def __str__(self):
            return f"E{self.value}"

    assert lat.CudaEvents._check((E(0), "ev"), "x") == "ev"
    assert lat.CudaEvents._check((0, 1, 2), "x") == [1, 2]
    assert lat.CudaEvents._check((0,), "x") is None
    assert lat.CudaEvents._check(0, "x") is None
    with pytest.raises(RunError, match="cudaEventCreate failed: E2"):
        lat.CudaEvents._check((E(2), None), "cudaEventCreate")


def test_cuda_standin_measure_latency_uses_events_for_cuda_timers(monkeypatch, clock):
    rt = _CudaRtStandIn([0.125])
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    eng = _HostEngine(clock.work, timer="cuda-events")
    r = measure_latency(eng, {"x": np.zeros((2, 1))}, warmup=1, iterations=4)
    assert r.times_ms == [0.125] * 4 and r.timer == "cuda-events"
    assert r.timer_scope == "launch + GPU: CUDA events on an idle stream around one asynchronous run"
    assert rt.destroyed == ["ev1", "ev2"] and eng.cleanups == 1


def test_cudart_missing_is_backend_unavailable(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_cuda(name, *a, **k):
        if name.startswith("cuda"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cuda)
    with pytest.raises(BackendUnavailable, match="GPU timing needs cuda-python") as e:
        lat._cudart()
    assert isinstance(e.value, WorkbenchError) and "pip install cuda-python" in str(e.value.hint)


def test_cuda_standin_event_creation_failures_name_the_call(monkeypatch):
    for which in ("create1", "create2"):
        rt = _CudaRtStandIn([1.0], fail=which)
        monkeypatch.setattr(lat, "_cudart", lambda: rt)
        with pytest.raises(RunError, match="^cudaEventCreate failed: 3$"):
            lat.CudaEvents()
    rt = _CudaRtStandIn([1.0])
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    assert lat.CudaEvents().stream == 0  # the legacy default stream unless told


def test_cuda_standin_budget_boundary(monkeypatch):
    clock = _Clock([0])
    monkeypatch.setattr(lat.time, "perf_counter_ns", clock)
    rt = _CudaRtStandIn([2.0], clock=clock)
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    t = lat.CudaEvents().timed(lambda: None, (), 1000, 4_000_000, None)  # the clock reaches 4 ms exactly
    assert len(t) == 2


def test_stats_accumulate_in_float64_and_default_batch():
    t32 = (np.arange(1, 20001, dtype=np.float32) * np.float32(0.1)).astype(np.float32)
    s = latency_stats(t32)
    t64 = t32.astype(np.float64)
    assert s["mean_ms"] == pytest.approx(t64.mean(), rel=1e-12, abs=0)
    assert s["std_ms"] == pytest.approx(t64.std(), rel=1e-12, abs=0)
    assert s["p90_ms"] == pytest.approx(np.percentile(t64, 90), rel=1e-12, abs=0)
    assert s["batch"] == 1 and s["throughput"] == pytest.approx(1000.0 / t64.mean())
    fast = latency_stats([0.5, 0.5], batch=2)  # a sub-millisecond mean still has a finite throughput
    assert fast["throughput"] == 4000.0


def test_measure_latency_defaults(clock, monkeypatch):
    seen = []
    real = lat._progress
    monkeypatch.setattr(lat, "_progress", lambda total, enabled, desc: seen.append((total, enabled)) or real(total, enabled, desc))
    eng = _HostEngine(clock.work, backend="")
    r = measure_latency(eng, {"x": np.zeros((1,), np.float32)})
    assert clock.k == 110 and len(r.times_ms) == 100 and r.warmup == 10 and r.requested_iterations == 100
    assert seen == [(100, False)] and r.backend == ""


def test_measure_latency_budget_bar_total_and_exact_deadline(clock, monkeypatch):
    seen = []
    monkeypatch.setattr(lat, "_progress", lambda total, enabled, desc: seen.append(total) or None)
    c = _Clock([2_000_000])
    monkeypatch.setattr(lat.time, "perf_counter_ns", c)
    r = measure_latency(_HostEngine(c.work), {"x": np.zeros(1)}, warmup=0, iterations=100, time_budget_s=0.004,
                        progress=True)
    assert seen == [0]  # a budget run does not know its count: an open-ended bar
    assert r.times_ms == [2.0, 2.0]  # the second call ends exactly on the 4 ms deadline


def test_measure_latency_without_a_build_record(clock):
    eng = _HostEngine(clock.work)
    eng.record = None
    assert measure_latency(eng, {"x": np.zeros(1)}, warmup=0, iterations=1).device == {}
    eng.record = type("R", (), {"device": {}})()
    assert measure_latency(eng, {"x": np.zeros(1)}, warmup=0, iterations=1).device == {}


def test_missing_feed_is_named_before_the_engine_is_asked(clock):
    eng = _HostEngine(clock.work)
    eng.input_names = ["x", "mask"]
    with pytest.raises(RunError, match=r"missing input\(s\) \['mask'\] for v1"):
        measure_latency(eng, {"x": np.zeros(1)}, iterations=1)


def test_cuda_standin_measure_latency_passes_stream_budget_and_bar(monkeypatch):
    clock = _Clock([0])
    monkeypatch.setattr(lat.time, "perf_counter_ns", clock)
    rt = _CudaRtStandIn([2.0], clock=clock)
    monkeypatch.setattr(lat, "_cudart", lambda: rt)
    bars = []
    monkeypatch.setattr(lat, "_progress", lambda total, enabled, desc: bars.append(_Bar()) or bars[-1])
    eng = _HostEngine(clock.work, timer="cuda-events")
    eng.stream = "s9"
    r = measure_latency(eng, {"x": np.zeros(1)}, warmup=0, iterations=100, time_budget_s=0.004, progress=True)
    assert r.times_ms == [2.0, 2.0]  # the budget reaches the event loop
    assert {s for _, s in rt.records} == {"s9"}  # events on the engine's own stream
    assert bars[0].updates == [2] and bars[0].closed


def test_measure_latency_fallbacks_for_unnamed_fields(clock):
    eng = _HostEngine(clock.work, precision="", timer="my-timer")
    r = measure_latency(eng, {"x": np.zeros(1)}, warmup=0, iterations=1)
    assert r.precision == "" and r.timer == "my-timer" and r.timer_scope == ""


def test_measure_latency_budget_in_seconds_to_the_nanosecond(monkeypatch):
    c = _Clock([1_000_000_000])  # each call takes exactly 1 s
    monkeypatch.setattr(lat.time, "perf_counter_ns", c)
    r = measure_latency(_HostEngine(c.work), {"x": np.zeros(1)}, warmup=0, iterations=10, time_budget_s=2.0)
    assert r.times_ms == [1000.0, 1000.0]  # the second call ends exactly on the 2 s deadline
