"""End-to-end latency of a built engine: warm-up, then timed iterations, then statistics.

``measure_latency(engine, feeds)`` prepares the inputs once, outside the timed region, then times each
iteration separately:

Each engine says how it is timed (:meth:`~workbench.backends.base.Engine.timed_call`, a
:class:`~workbench.backends.base.TimedCall`); this module only runs the loop and the timers:

* ONNX Runtime CPU: ``time.perf_counter_ns`` around ``session.run`` (timer ``"host"``).
* ONNX Runtime CUDA: inputs on the GPU once, ``run_with_iobinding`` per iteration; CUDA events on the
  session's own ``user_compute_stream`` (timer ``"cuda-events"``) or host timers around the synchronizing
  call (``"host-sync"``); see :mod:`workbench.backends.onnxruntime`.
* TensorRT: the engine stages inputs on the GPU once; each iteration is one enqueue bracketed by CUDA
  events recorded on the engine's stream (timer ``"cuda-events"``).
* Any other :class:`~workbench.backends.base.Engine`: host timers around ``engine.run(feeds)`` (the default).

The loop allocates nothing per iteration beyond the call itself: timings go into a preallocated
``int64``/``float64`` array, and the optional progress bar is updated once per chunk of iterations.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from ..backends.base import TimedCall
from ..data import feeds_batch
from ..errors import BackendUnavailable, RunError, UsageError, WorkbenchError
from ..logs import captures_native_log
from ..records import Record, host_info, now_iso

#: Iteration cap when only a time budget is given.
MAX_BUDGET_ITERATIONS = 1_000_000
#: Progress bars advance once per this many iterations (or per chunk of the time budget).
_CHUNK = 50

STAT_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput",
             "iterations", "batch")
FRAME_COLUMNS = ["variant", "backend", "precision", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                 "std_ms", "min_ms", "max_ms", "throughput", "iterations", "timer", "device"]


def latency_stats(times_ms: np.ndarray | list[float], batch: int = 1) -> dict[str, float | int]:
    """Statistics of per-iteration times (ms): percentiles (linear interpolation), mean, std
    (population), min, max, and throughput = ``batch / mean`` in samples per second."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise RunError("no timed iterations: nothing to summarize")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    mean = float(t.mean())
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
            "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()),
            "throughput": (batch * 1000.0 / mean) if mean > 0 else math.inf,
            "iterations": int(t.size), "batch": int(batch)}


#: What each timer's interval covers when the engine does not say more (``TimedCall.scope``).
TIMER_SCOPES = {
    "host": "host wall time of one synchronous run",
    "host-sync": "host wall time of one run that synchronizes its stream",
    "cuda-events": "launch + GPU: CUDA events on an idle stream around one asynchronous run",
}


@dataclass
class LatencyResult(Record):
    """One latency measurement of one engine. ``times_ms`` holds every timed iteration."""

    kind: ClassVar[str] = "latency"
    variant: str = ""
    backend: str = ""
    precision: str = ""
    batch: int = 1
    device: dict = field(default_factory=dict)
    timer: str = "host"  # host | host-sync | cuda-events
    timer_scope: str = ""  # what the timed interval covers (the engine's TimedCall.scope)
    warmup: int = 0
    requested_iterations: int | None = None
    time_budget_s: float | None = None
    times_ms: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    host: dict = field(default_factory=host_info)

    def __post_init__(self):
        if not self.stats and self.times_ms:
            self.stats = latency_stats(self.times_ms, self.batch)

    @property
    def p50_ms(self) -> float:
        return float(self.stats["p50_ms"])

    def to_row(self) -> dict[str, Any]:
        """The flat row used by :meth:`to_frame` and by the CLI's JSON."""
        dev = self.device.get("name") or self.device.get("type") or ""
        return {"variant": self.variant, "backend": self.backend, "precision": self.precision,
                **{k: self.stats.get(k) for k in STAT_KEYS if k != "batch"}, "batch": self.batch,
                "timer": self.timer, "device": dev}

    def to_frame(self):
        """One-row tidy DataFrame (columns :data:`FRAME_COLUMNS`)."""
        import pandas as pd

        return pd.DataFrame([self.to_row()], columns=FRAME_COLUMNS)

    def times_frame(self):
        """Per-iteration times: columns variant, backend, precision, iteration, time_ms."""
        import pandas as pd

        return pd.DataFrame({"variant": self.variant, "backend": self.backend, "precision": self.precision,
                             "iteration": np.arange(len(self.times_ms)), "time_ms": self.times_ms})

    def __repr__(self) -> str:
        s = self.stats
        return (f"<LatencyResult {self.variant} on {self.backend}: p50 {s.get('p50_ms', float('nan')):.3f} ms, "
                f"p99 {s.get('p99_ms', float('nan')):.3f} ms, n={s.get('iterations')} ({self.timer})>")


def latency_frame(results) -> "Any":
    """Concatenate several :class:`LatencyResult` into one tidy DataFrame."""
    import pandas as pd

    return pd.DataFrame([r.to_row() for r in results], columns=FRAME_COLUMNS)


# ------------------------------------------------------------------------------------------ helpers
def _check_counts(warmup: int, iterations: int | None, time_budget_s: float | None) -> int:
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise UsageError(f"warmup must be an integer >= 0, got {warmup!r}")
    if iterations is None:
        if time_budget_s is None:
            raise UsageError("give iterations or time_budget_s")
        iterations = MAX_BUDGET_ITERATIONS
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations <= 0:
        raise UsageError(f"iterations must be a positive integer, got {iterations!r}")
    if time_budget_s is not None and not (time_budget_s > 0):
        raise UsageError(f"time_budget_s must be > 0, got {time_budget_s!r}")
    return int(iterations)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


def _host_timed(fn: Callable, args: tuple, n: int, budget_ns: int | None, bar) -> np.ndarray:
    """Call ``fn(*args)`` up to ``n`` times with perf_counter_ns around each call; with ``budget_ns``,
    stop after the call that passes the budget. Returns the times in ms."""
    ns = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    done = 0
    if budget_ns is not None:
        deadline = clock() + budget_ns
        for i in range(n):
            t0 = clock()
            fn(*args)
            t1 = clock()
            ns[i] = t1 - t0
            if t1 >= deadline:
                done = i + 1
                break
        else:
            done = n
        if bar is not None:
            bar.update(done)
        return ns[:done] / 1e6
    while done < n:
        stop = min(n, done + _CHUNK) if bar is not None else n
        for i in range(done, stop):
            t0 = clock()
            fn(*args)
            ns[i] = clock() - t0
        if bar is not None:
            bar.update(stop - done)
        done = stop
    return ns / 1e6


# -------------------------------------------------------------------------------- CUDA events
class CudaEvents:
    """A start/end CUDA event pair on one stream (cuda-python ``cuda.bindings.runtime``).

    ``stream``: a ``cudaStream_t`` object or an integer handle (0 = the legacy default stream)."""

    def __init__(self, stream: Any = 0):
        self.rt = _cudart()
        self.stream = stream
        self.start = self._check(self.rt.cudaEventCreate(), "cudaEventCreate")
        self.end = self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    @staticmethod
    def _check(ret, what: str):
        err, *vals = ret if isinstance(ret, tuple) else (ret,)
        if int(getattr(err, "value", err)) != 0:
            raise RunError(f"{what} failed: {err}")
        return vals[0] if len(vals) == 1 else (vals or None)

    def timed(self, fn: Callable, args: tuple, n: int, budget_ns: int | None, bar) -> np.ndarray:
        """Record start, call ``fn(*args)`` (which enqueues on ``self.stream``), record end, synchronize,
        read the elapsed time; per iteration. Returns ms."""
        rt, s, e0, e1 = self.rt, self.stream, self.start, self.end
        record, sync, elapsed = rt.cudaEventRecord, rt.cudaEventSynchronize, rt.cudaEventElapsedTime
        success = rt.cudaError_t.cudaSuccess
        out = np.empty(n, dtype=np.float64)
        clock = time.perf_counter_ns
        deadline = None if budget_ns is None else clock() + budget_ns
        done = 0
        while done < n:
            stop = min(n, done + _CHUNK)
            for i in range(done, stop):
                record(e0, s)
                fn(*args)
                record(e1, s)
                (err,) = sync(e1)  # reports a failure of the work between the events
                if err != success:
                    raise RunError(f"cudaEventSynchronize failed: {err}")
                err, ms = elapsed(e0, e1)  # (err, None) on failure
                if err != success:
                    raise RunError(f"cudaEventElapsedTime failed: {err}")
                out[i] = ms
                if deadline is not None and clock() >= deadline:
                    stop = i + 1
                    break
            if bar is not None:
                bar.update(stop - done)
            done = stop
            if deadline is not None and clock() >= deadline:
                break
        return out[:done]

    def close(self) -> None:
        for ev in (self.start, self.end):
            try:
                self.rt.cudaEventDestroy(ev)
            except Exception:  # pragma: no cover - teardown
                pass


def _cudart():
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python
        except ImportError:
            raise BackendUnavailable("GPU timing needs cuda-python", hint="pip install cuda-python") from None
    return rt


# ------------------------------------------------------------------------------- engine drivers
def _driver(engine, feeds: Mapping[str, np.ndarray]) -> TimedCall:
    """The engine's own timed call (:meth:`Engine.timed_call`): inputs prepared once, outside the timed
    region; one call per iteration."""
    missing = [n for n in engine.input_names if n not in feeds]
    if missing:
        raise RunError(f"missing input(s) {missing} for {engine.variant.name}")
    return engine.timed_call(feeds)


@captures_native_log
def measure_latency(engine, feeds: Mapping[str, np.ndarray], *, warmup: int = 10, iterations: int | None = 100,
                    time_budget_s: float | None = None, progress: bool = False) -> LatencyResult:
    """Time ``engine`` on ``feeds``: ``warmup`` untimed runs, then up to ``iterations`` timed runs,
    stopping early once ``time_budget_s`` has elapsed (``iterations=None`` with a budget: run until the
    budget is spent, at most :data:`MAX_BUDGET_ITERATIONS`).

    Example::

        eng = get_backend("onnxruntime").build(Variant.of(load("m.onnx")))
        res = measure_latency(eng, synthetic_inputs(eng.variant.model), iterations=200)
        res.stats["p50_ms"], res.to_frame()
    """
    n = _check_counts(warmup, iterations, time_budget_s)
    try:
        call = _driver(engine, feeds)
    except WorkbenchError:
        raise
    except Exception as e:  # preparing the inputs on the device (IOBinding, staging) failed
        raise RunError(f"{engine.variant.name or 'engine'} could not be prepared for timing: {e}") from e
    fn, args, timer, stream, cleanup = call.fn, call.args, call.timer, call.stream, call.cleanup
    variant = engine.variant
    name = variant.name or ""
    backend = engine.backend.name or ""
    record = engine.record
    device = dict(record.device) if record is not None and record.device else {}
    events = None
    try:
        try:
            for _ in range(warmup):
                fn(*args)
            if warmup:
                engine.synchronize()
        except Exception as e:
            raise RunError(f"{name or 'engine'} failed during warm-up: {e}") from e
        budget_ns = None if time_budget_s is None else int(time_budget_s * 1e9)
        bar = _progress(n if time_budget_s is None else 0, progress, f"latency {name}")
        try:
            if timer == "cuda-events":
                events = CudaEvents(stream)
                times = events.timed(fn, args, n, budget_ns, bar)
            else:
                times = _host_timed(fn, args, n, budget_ns, bar)
        except WorkbenchError:
            raise
        except Exception as e:  # the runtime refused the inputs (e.g. ORT InvalidArgument on a 0-sized dim)
            raise RunError(f"{name or 'engine'} failed while being timed: {e}") from e
        finally:
            if bar is not None:
                bar.close()
    finally:
        if events is not None:
            events.close()
        if cleanup is not None:
            cleanup()
    batch = feeds_batch(feeds)
    return LatencyResult(variant=name, backend=backend, precision=variant.precision or "",
                         batch=batch, device=device, timer=timer, timer_scope=call.scope or TIMER_SCOPES.get(timer, ""), warmup=int(warmup),
                         requested_iterations=None if iterations is None else int(iterations),
                         time_budget_s=time_budget_s, times_ms=[float(x) for x in times],
                         stats=latency_stats(times, batch))
