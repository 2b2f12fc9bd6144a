"""GPU per-layer time for ONNX Runtime's CUDA provider from CUPTI activity records.

Why: ORT's profiler times each CUDA node on the *host* (the ``Compute`` call that launches its kernels
asynchronously), so Σ nodes is launch time, not GPU time (measured on an H200: 0.36 to 6.4 × the
end-to-end latency). CUPTI's activity API records every kernel, memcpy and memset with its start and
end *on the device*, and every CUDA runtime/driver API call with its host start/end; both carry a
correlation id. This module joins them:

1. a profiled ORT session (``enable_profiling``) runs with inputs and outputs bound on the GPU
   (IOBinding, as in the latency run), while CUPTI records CONCURRENT_KERNEL, MEMCPY, MEMSET,
   RUNTIME and DRIVER activity (cuBLAS launches part of its kernels through the driver API);
2. each device record is matched to its launch call by correlation id (:func:`launch_times`);
3. ORT's node events (microseconds since the profiler started) are put on CUPTI's clock with markers
   taken on both clocks (:func:`clock_marker`, :func:`align`): the clock whose mapping puts the most
   launches inside ORT ``model_run`` events wins, and the share is kept as ``alignment``;
4. a device record belongs to the innermost ORT node whose host interval contains its launch
   (:func:`attribute`). Records launched outside every node are not dropped: memcpy/memset become
   ``copy`` rows, kernels ``unattributed`` rows.

The result is the usual per-layer DataFrame (:data:`~workbench.measure.layers.COLUMNS`) whose
``time_ms`` is GPU time per iteration, plus ``time_basis`` (``cupti-gpu``; ``host`` for nodes ORT ran
on its CPU provider inside the CUDA session), ``host_ms`` (ORT's host time of the node),
``kernel_count`` (device records per iteration) and ``kernels`` (kernel names with counts) for
drill-downs. ``df.attrs["gpu"]`` holds the run's GPU busy time, span and idle share, which
:func:`~workbench.measure.layers.coverage` uses to explain a Σ layers / end-to-end outside 0.9–1.1.

``cupti-python`` is an optional extra (``pip install 'trt-workbench[cupti]'``); without it or without
a GPU, :func:`cupti_unavailable` says why and callers fall back to ORT's host-side profiler. The pure
functions (:func:`attribute`, :func:`align`, :func:`gpu_timeline`) take plain dicts, so they are
tested on CPU with records recorded on a GPU (``tests/data/cupti_*.json.gz``).
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import BackendUnavailable, RunError

#: device-side record kinds and host-side API kinds this module keeps
DEVICE_KINDS = ("kernel", "memcpy", "memset")
API_KINDS = ("runtime", "driver")
COPY_ONNX_NODE = "<copy>"
UNATTRIBUTED_ONNX_NODE = "<unattributed>"
#: bound of the clock-offset refinement (:func:`refine_offset`)
REFINE_MAX_NS = 5_000
_MEMCPY_KINDS = {1: "HtoD", 2: "DtoH", 3: "HtoA", 4: "AtoH", 5: "AtoA", 6: "AtoD", 7: "DtoA", 8: "DtoD",
                 9: "HtoH", 10: "PtoP"}


# ------------------------------------------------------------------------------------ availability
def _import_cupti():
    from cupti import cupti  # cupti-python (NVIDIA), CUDA 13 builds

    return cupti


def cupti_unavailable() -> str | None:
    """``None`` when CUPTI activity tracing can run here, else the reason (for skips and fallbacks)."""
    try:
        _import_cupti()
    except ImportError as e:
        return f"cupti-python not installed (pip install 'trt-workbench[cupti]'): {e}"
    except Exception as e:  # the module loads libcupti: a missing library surfaces here
        return f"cupti-python could not load libcupti: {type(e).__name__}: {e}"
    try:
        from ..device import cuda_device_info

        info = cuda_device_info(0)
    except Exception as e:
        return f"no NVIDIA GPU: {e}"
    if "error" in info:
        return f"no NVIDIA GPU: {info['error']}"
    return None


# ------------------------------------------------------------------------------------- recording
def _record_to_dict(a: Any, cupti) -> dict | None:
    """A plain dict of the fields this module uses, or None for kinds it ignores. CUPTI activity objects
    point into a buffer CUPTI reuses, so they are copied inside the completion callback."""
    k = int(a.kind)
    AK = cupti.ActivityKind
    if k in (int(AK.CONCURRENT_KERNEL), int(AK.KERNEL)):
        return {"kind": "kernel", "name": str(a.name), "start": int(a.start), "end": int(a.end),
                "correlation_id": int(a.correlation_id), "stream_id": int(a.stream_id)}
    if k == int(AK.MEMCPY):
        return {"kind": "memcpy", "copy_kind": _MEMCPY_KINDS.get(int(a.copy_kind), str(int(a.copy_kind))),
                "bytes": int(a.bytes), "start": int(a.start), "end": int(a.end),
                "correlation_id": int(a.correlation_id), "stream_id": int(a.stream_id)}
    if k == int(AK.MEMSET):
        return {"kind": "memset", "bytes": int(a.bytes), "start": int(a.start), "end": int(a.end),
                "correlation_id": int(a.correlation_id), "stream_id": int(a.stream_id)}
    if k in (int(AK.RUNTIME), int(AK.DRIVER)):
        return {"kind": "runtime" if k == int(AK.RUNTIME) else "driver", "cbid": int(a.cbid),
                "start": int(a.start), "end": int(a.end), "correlation_id": int(a.correlation_id),
                "thread_id": int(a.thread_id)}
    return None


class _Collector:
    """Process-wide CUPTI buffer callbacks (CUPTI takes one registration per process) routed into the
    active :class:`ActivityTrace`."""

    lock = threading.Lock()
    registered = False
    sink: list | None = None
    dropped_kinds: Counter = Counter()

    @classmethod
    def ensure(cls, cupti) -> None:
        if cls.registered:
            return

        def requested():
            return 8 * 1024 * 1024, 0  # buffer bytes, max records (0: as many as fit)

        def completed(activities):
            out = []
            for a in activities:
                try:
                    d = _record_to_dict(a, cupti)
                except Exception:
                    d = None
                if d is None:
                    cls.dropped_kinds[int(getattr(a, "kind", -1))] += 1
                else:
                    out.append(d)
            with cls.lock:
                if cls.sink is not None:
                    cls.sink.extend(out)

        cupti.activity_register_callbacks(requested, completed)
        cls.registered = True


def clock_marker(cupti=None, samples: int = 5) -> dict:
    """CUPTI's timestamp read next to the host clocks ORT may use (``time_ns``: system clock, which
    libstdc++'s ``high_resolution_clock`` is; ``monotonic_ns``: ``steady_clock``). The sample with the
    tightest bracket is kept; ``bracket_ns`` is its uncertainty."""
    cupti = cupti or _import_cupti()
    best = None
    for _ in range(samples):
        a = time.perf_counter_ns()
        wall, mono = time.time_ns(), time.monotonic_ns()
        c = int(cupti.get_timestamp())
        wall2, mono2 = time.time_ns(), time.monotonic_ns()
        b = time.perf_counter_ns()
        m = {"cupti_ns": c, "time_ns": (wall + wall2) // 2, "monotonic_ns": (mono + mono2) // 2, "bracket_ns": b - a}
        if best is None or m["bracket_ns"] < best["bracket_ns"]:
            best = m
    return best


class ActivityTrace:
    """Context manager: CUPTI activity records of the GPU work done inside it.

    ``records`` is a list of dicts (kinds :data:`DEVICE_KINDS` and :data:`API_KINDS`); ``markers`` holds
    :func:`clock_marker` readings taken at enter and exit."""

    KINDS = ("CONCURRENT_KERNEL", "MEMCPY", "MEMSET", "RUNTIME", "DRIVER")

    def __init__(self):
        reason = cupti_unavailable()
        if reason:
            raise BackendUnavailable(f"CUPTI tracing unavailable: {reason}")
        self.cupti = _import_cupti()
        self.records: list[dict] = []
        self.markers: list[dict] = []
        self._enabled: list = []

    def __enter__(self) -> "ActivityTrace":
        cupti = self.cupti
        _Collector.ensure(cupti)
        with _Collector.lock:
            if _Collector.sink is not None:
                raise RunError("a CUPTI trace is already running in this process")
            _Collector.sink = self.records
        try:
            for k in self.KINDS:
                kind = getattr(cupti.ActivityKind, k)
                cupti.activity_enable(kind)
                self._enabled.append(kind)
        except Exception:
            self._disable()
            raise
        self.markers.append(clock_marker(cupti))
        return self

    def _disable(self) -> None:
        for kind in self._enabled:
            try:
                self.cupti.activity_disable(kind)
            except Exception:
                pass
        self._enabled.clear()
        with _Collector.lock:
            _Collector.sink = None

    def __exit__(self, *exc) -> None:
        try:
            _device_synchronize()
            self.markers.append(clock_marker(self.cupti))
            self.cupti.activity_flush_all(1)  # 1 = CUPTI_ACTIVITY_FLAG_FLUSH_FORCED: complete partial buffers
        finally:
            self._disable()


def _device_synchronize() -> None:
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        try:
            from cuda import cudart as rt
        except ImportError:
            return
    rt.cudaDeviceSynchronize()


# ------------------------------------------------------------------------------------- pure logic
def launch_times(records: Iterable[Mapping]) -> dict[int, dict]:
    """correlation id → the host API call (runtime preferred over driver) that launched the work."""
    out: dict[int, dict] = {}
    for r in records:
        if r["kind"] in API_KINDS:
            cid = int(r["correlation_id"])
            if cid not in out or (r["kind"] == "runtime" and out[cid]["kind"] != "runtime"):
                out[cid] = r
    return out


def launch_array(records: Iterable[Mapping]) -> np.ndarray:
    """Host start times (CUPTI ns) of the API calls that launched device work (kernels, copies, memsets):
    synchronization and other API calls that ORT makes outside nodes are left out."""
    records = list(records)
    cids = {int(r["correlation_id"]) for r in records if r["kind"] in DEVICE_KINDS}
    starts = [int(a["start"]) for cid, a in launch_times(records).items() if cid in cids]
    return np.array(sorted(starts), dtype=np.int64)


def _runs(events: list[dict]) -> list[tuple[float, float]]:
    return sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")


def _nodes(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            args = e.get("args", {}) or {}
            out.append({"name": e["name"][: -len("_kernel_time")], "ts": float(e["ts"]), "dur": float(e["dur"]),
                        "op": args.get("op_name", ""),
                        "provider": str(args.get("provider", "")).replace("ExecutionProvider", ""),
                        "shapes": args.get("input_type_shape")})
    out.sort(key=lambda n: n["ts"])
    return out


def align(events: list[dict], ort_start_ns: int, markers: list[dict], records: Iterable[Mapping]) -> dict:
    """Offset (ns) that maps ORT trace time to CUPTI time: ``cupti = ort_start_ns + ts_us * 1000 + offset``.

    Each host clock with a marker reading gives a candidate offset (CUPTI minus host at the marker; the
    median over markers); the candidate that puts the most launch calls (API records that launched device
    work) inside ORT ``model_run`` events wins. Returns ``{"offset_ns", "clock", "alignment", "candidates"}`` (``alignment``: the
    share of launches inside runs for the chosen clock)."""
    runs = _runs(events)
    launches = launch_array(records)
    candidates = {}
    for clock in ("time_ns", "monotonic_ns"):
        vals = [int(m["cupti_ns"]) - int(m[clock]) for m in markers if clock in m]
        if not vals:
            continue
        off = int(np.median(vals))
        starts = np.array([r[0] for r in runs], dtype=np.float64)
        ends = np.array([r[1] for r in runs], dtype=np.float64)
        la = (launches - (ort_start_ns + off)) / 1000.0  # int64 difference first: exact, then µs
        inside = 0
        if len(la) and len(starts):
            i = np.searchsorted(starts, la, side="right") - 1
            ok = i >= 0
            inside = int(np.sum(ok & (la <= ends[np.clip(i, 0, None)])))
        candidates[clock] = {"offset_ns": off, "alignment": inside / len(launches) if len(launches) else 0.0}
    if not candidates:
        raise RunError("no clock marker to align ONNX Runtime's trace with CUPTI")
    clock = max(candidates, key=lambda c: candidates[c]["alignment"])
    off = candidates[clock]["offset_ns"]
    shift, before, after = refine_offset(events, ort_start_ns, off, launches)
    return {"offset_ns": off + shift, "clock": clock, "alignment": candidates[clock]["alignment"],
            "candidates": candidates, "refine_shift_ns": shift, "in_nodes_before": before, "in_nodes_after": after}


def refine_offset(events: list[dict], ort_start_ns: int, offset_ns: int, launches: np.ndarray,
                  max_shift_ns: int = REFINE_MAX_NS, step_ns: int = 250) -> tuple[int, float, float]:
    """A shift of at most ±``max_shift_ns`` added to ``offset_ns`` that puts the most launch calls inside
    ORT node intervals (ORT launches a node's kernels from inside its ``Compute``; node events last a
    few µs on small models, and ORT truncates its timestamps to whole µs). The bound is kept at the size
    of those errors (:data:`REFINE_MAX_NS`), so launches that really happen outside nodes are not pulled
    in. Returns (shift, share inside nodes before, after); the shift closest to 0 wins ties."""
    nodes = _nodes(events)
    if not len(launches) or not nodes:
        return 0, 0.0, 0.0
    # everything in ns relative to ORT's profiler start on CUPTI's clock (int64 difference first: exact)
    ns = np.array([n["ts"] for n in nodes]) * 1000.0
    ne = ns + np.array([n["dur"] for n in nodes]) * 1000.0
    la = (launches - (ort_start_ns + offset_ns)).astype(np.float64)
    order = np.argsort(ns, kind="stable")
    ns, ne = ns[order], ne[order]
    run = np.maximum.accumulate(ne)  # nested nodes: the furthest end reached so far

    def inside(shift: float) -> int:
        i = np.searchsorted(ns + shift, la, side="right") - 1
        ok = i >= 0
        return int(np.sum(ok & (la <= run[np.clip(i, 0, None)] + shift)))

    shifts = sorted(range(-max_shift_ns, max_shift_ns + 1, step_ns), key=abs)
    scores = [inside(float(sh)) for sh in shifts]
    best = int(np.argmax(scores))  # first maximum: the smallest |shift| among equals
    n = len(la)
    return int(shifts[best]), inside(0.0) / n, scores[best] / n


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def attribute(records: list[Mapping], events: list[dict], *, ort_start_ns: int, markers: list[dict],
              skip_runs: int = 0) -> dict:
    """Attribute CUPTI device records to ORT nodes (see the module doc).

    Returns ``{"nodes": {node: {...}}, "copy": {label: {...}}, "unattributed": {...}, "runs": n,
    "timeline": {...}, "alignment": {...}, "counts": {...}}``. Each entry holds ``gpu_ns`` (summed over
    the timed runs), ``records`` (device records), ``kernels`` (Counter of names); nodes also hold
    ``host_us``, ``host_calls``, ``op``, ``provider``, ``shapes``. Only ORT runs after ``skip_runs`` and
    device records launched inside them, or after the first of them, count."""
    al = align(events, ort_start_ns, markers, records)
    off = al["offset_ns"]
    runs = _runs(events)[skip_runs:]
    if not runs:
        raise RunError("the ONNX Runtime profile holds no timed model_run event")
    c0 = int(ort_start_ns) + int(off)  # CUPTI time of ORT's trace origin
    to_us = lambda t: (int(t) - c0) / 1000.0  # noqa: E731  CUPTI ns -> ORT trace µs (int difference: exact)
    run_s = np.array([r[0] for r in runs])
    run_e = np.array([r[1] for r in runs])
    nodes = [n for n in _nodes(events) if n["ts"] >= runs[0][0] and n["ts"] + n["dur"] <= runs[-1][1]]
    node_s = np.array([n["ts"] for n in nodes])
    node_e = np.array([n["ts"] + n["dur"] for n in nodes])
    out_nodes: dict[str, dict] = {}
    for n in nodes:
        rec = out_nodes.setdefault(n["name"], {"gpu_ns": 0, "records": 0, "kernels": Counter(), "host_us": 0.0,
                                               "host_calls": 0, "op": n["op"], "provider": n["provider"],
                                               "shapes": n["shapes"]})
        rec["host_us"] += n["dur"]
        rec["host_calls"] += 1
    launches = launch_times(records)
    copies: dict[str, dict] = {}
    unattributed = {"gpu_ns": 0, "records": 0, "kernels": Counter()}
    counts = Counter()
    per_run: list[list[tuple[int, int]]] = [[] for _ in runs]
    for r in records:
        if r["kind"] not in DEVICE_KINDS:
            continue
        api = launches.get(int(r["correlation_id"]))
        if api is None:
            counts["no_launch_record"] += 1
            t = None
        else:
            t = to_us(api["start"])
        dur = int(r["end"]) - int(r["start"])
        label = _label(r)
        # the timed run this record belongs to: by its launch, else by its device start
        key = t if t is not None else to_us(r["start"])
        ri = int(np.searchsorted(run_s, key, side="right")) - 1
        in_run = ri >= 0 and key <= run_e[ri]
        if ri < 0:
            counts["before_timed_runs"] += 1
            continue  # warm-up work that completed inside the trace window: not part of the timed runs
        if in_run:
            per_run[ri].append((int(r["start"]), int(r["end"])))
        else:
            counts["between_runs"] += 1
        owner = None
        if t is not None and len(node_s):
            j = int(np.searchsorted(node_s, t, side="right")) - 1
            while j >= 0 and node_s[j] <= t:  # innermost (latest-starting) node containing the launch
                if t <= node_e[j]:
                    owner = nodes[j]["name"]
                    break
                j -= 1
                if j >= 0 and t - node_s[j] > 60e6:  # nodes more than a minute earlier cannot contain it
                    break
        if owner is not None:
            rec = out_nodes[owner]
            counts["in_nodes"] += 1
        elif r["kind"] == "kernel":
            rec = unattributed
            counts["unattributed_kernels"] += 1
        else:
            rec = copies.setdefault(label, {"gpu_ns": 0, "records": 0, "kernels": Counter()})
            counts["copies_outside_nodes"] += 1
        rec["gpu_ns"] += dur
        rec["records"] += 1
        rec["kernels"][label] += 1
    return {"nodes": out_nodes, "copy": copies, "unattributed": unattributed, "runs": len(runs),
            "timeline": gpu_timeline(per_run, run_s, run_e), "alignment": al, "counts": dict(counts)}



def _label(r: Mapping) -> str:
    if r["kind"] == "kernel":
        return str(r.get("name", "?"))
    if r["kind"] == "memcpy":
        return f"memcpy {r.get('copy_kind', '?')}"
    return "memset"


def gpu_timeline(per_run: list[list[tuple[int, int]]], run_s, run_e) -> dict:
    """Per timed run: GPU busy time (union of device intervals, CUPTI ns), span (first start → last end)
    and the host ``model_run`` time (``run_s``/``run_e`` in ORT trace µs); means in ms and the idle share
    of the span."""
    busy, span, host = [], [], []
    for iv, s, e in zip(per_run, run_s, run_e):
        host.append((e - s) / 1e3)  # ORT trace µs -> ms
        if not iv:
            continue
        busy.append(_union_ns(iv) / 1e6)
        span.append((max(b for _, b in iv) - min(a for a, _ in iv)) / 1e6)
    b = float(np.mean(busy)) if busy else 0.0
    sp = float(np.mean(span)) if span else 0.0
    return {"busy_ms": b, "span_ms": sp, "host_run_ms": float(np.mean(host)) if host else 0.0,
            "idle_share": (sp - b) / sp if sp > 0 else 0.0, "runs_with_gpu_work": len(busy)}


def _kernel_text(c: Counter, limit: int = 12) -> str:
    items = c.most_common()
    parts = [f"{name} ×{n}" for name, n in items[:limit]]
    if len(items) > limit:
        parts.append(f"… {len(items) - limit} more")
    return "; ".join(parts)


def attribution_stats(att: Mapping) -> tuple[dict[str, dict], list[dict]]:
    """(stats for :func:`~workbench.measure.layers.ort_layer_rows`, extra per-layer fields by layer name,
    as a list of rows for copies/unattributed work). Node ``dur_us`` is GPU time for CUDA-provider nodes
    and host time for nodes ORT ran on its CPU provider (``time_basis`` says which)."""
    from .layers import shape_text  # layers imports this module lazily too: no cycle at import time

    stats: dict[str, dict] = {}
    for name, n in att["nodes"].items():
        on_cpu = n["provider"] == "CPU"
        stats[name] = {"dur_us": (n["host_us"] if on_cpu else n["gpu_ns"] / 1000.0),
                       "count": n["host_calls"] if on_cpu else n["records"], "op": n["op"], "provider": n["provider"],
                       "shapes": shape_text(n["shapes"]),
                       "time_basis": "host" if on_cpu else "cupti-gpu", "host_us": n["host_us"],
                       "kernel_count": n["records"], "kernels": _kernel_text(n["kernels"])}
    extra = []
    for label, c in sorted(att["copy"].items()):
        extra.append({"layer": f"copy ({label})", "layer_type": "copy", "onnx_node": COPY_ONNX_NODE, "gpu_ns": c["gpu_ns"],
                      "records": c["records"], "kernels": _kernel_text(c["kernels"])})
    u = att["unattributed"]
    if u["records"]:
        extra.append({"layer": "unattributed kernels", "layer_type": "unattributed", "onnx_node": UNATTRIBUTED_ONNX_NODE,
                      "gpu_ns": u["gpu_ns"], "records": u["records"], "kernels": _kernel_text(u["kernels"])})
    return stats, extra


def cpu_nodes(att: Mapping, top: int = 4) -> dict:
    """Nodes ONNX Runtime ran on its CPU provider inside a CUDA session: ``{"ms": host ms per run, "count",
    "top": [(name, ms)]}``. While they run (and copy data to and from the GPU), the GPU waits."""
    runs = max(int(att["runs"]), 1)
    cpu = sorted(((n, v["host_us"] / 1000.0 / runs) for n, v in att["nodes"].items() if v["provider"] == "CPU"),
                 key=lambda t: -t[1])
    return {"ms": float(sum(ms for _, ms in cpu)), "count": len(cpu), "top": [(n, round(ms, 4)) for n, ms in cpu[:top]]}


CUPTI_EXTRA = ["shapes", "time_basis", "host_ms", "kernel_count", "kernels"]


def layer_rows(att: Mapping, ix, optimized: Mapping[str, Any]) -> list[dict]:
    """Per-layer rows (without variant/backend/precision) from :func:`attribute`'s result."""
    from .layers import ort_layer_rows

    stats, extra = attribution_stats(att)
    runs = att["runs"]
    rows = ort_layer_rows(stats, runs, ix, optimized) if stats else []
    for r in rows:
        s = stats[r["layer"]]
        r.update(time_basis=s["time_basis"], host_ms=s["host_us"] / 1000.0 / runs,
                 kernel_count=s["kernel_count"] / runs, kernels=s["kernels"])
    for e in extra:
        rows.append({"layer": e["layer"], "layer_type": e["layer_type"], "onnx_nodes": [], "onnx_node": e["onnx_node"],
                     "provider": "CUDA", "time_ms": e["gpu_ns"] / 1e6 / runs, "calls": e["records"] / runs,
                     "mapped_by": "cupti", "shapes": "", "time_basis": "cupti-gpu", "host_ms": 0.0,
                     "kernel_count": e["records"] / runs, "kernels": e["kernels"]})
    return rows


# ------------------------------------------------------------------------------- the profiled run
def profile_layers_ort_cupti(engine, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                             progress: bool = False, record_to: str | os.PathLike | None = None,
                             layout_optimizations: bool = True):
    """Per-layer GPU time of an ONNX Runtime CUDA engine (see the module doc): a separate profiled session
    with inputs/outputs bound on the GPU, ``warmup`` untimed runs (cuDNN algorithm search happens there),
    then ``iterations`` runs under CUPTI tracing. ``record_to``: also write the raw CUPTI records, ORT
    trace and clock markers there (gzip JSON; :func:`load_recording` reads it back)."""
    from .layers import check_counts as _check, named_index as _named_index
    from .layers import optimized_nodes as _optimized_nodes, ort_profiling_session as _ort_session
    from .native_log import capture_native_output

    _check(iterations, warmup)
    if cupti_unavailable():
        raise BackendUnavailable(f"CUPTI tracing unavailable: {cupti_unavailable()}")
    proto, ix = _named_index(engine)
    with tempfile.TemporaryDirectory(prefix="workbench-cupti-") as td, capture_native_output() as native:
        tmp = Path(td)
        sess = _ort_session(engine, proto, tmp, layout_optimizations)
        start_ns = int(sess.get_profiling_start_time_ns())

        missing = [i.name for i in sess.get_inputs() if i.name not in feeds]
        if missing:
            raise RunError(f"missing input(s) {missing} for {engine.variant.name}")
        io, keep = _iobinding(sess, feeds, int(getattr(engine.backend, "device_id", 0)))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=warmup + iterations, desc=f"profile {engine.variant.name} (CUPTI)", unit="it", leave=False)
        try:
            for _ in range(warmup):
                sess.run_with_iobinding(io)
                if bar is not None:
                    bar.update(1)
            _device_synchronize()
            with ActivityTrace() as trace:
                for _ in range(iterations):
                    sess.run_with_iobinding(io)
                    if bar is not None:
                        bar.update(1)
        except BackendUnavailable:
            raise
        except Exception as e:
            raise RunError(f"ONNX Runtime failed while profiling {engine.variant.name} under CUPTI: {e}") from e
        finally:
            if bar is not None:
                bar.close()
            keep.clear()
        trace_file = Path(sess.end_profiling())
        try:
            events = json.loads(trace_file.read_text())
        finally:
            trace_file.unlink(missing_ok=True)
        optimized = _optimized_nodes(tmp / "optimized.onnx")
        del io, sess
    recording = {"format": "workbench-cupti-recording/1", "variant": engine.variant.name,
                 "precision": engine.variant.precision, "ort_start_ns": start_ns, "markers": trace.markers,
                 "skip_runs": warmup, "iterations": iterations, "records": trace.records, "ort_events": events}
    if record_to is not None:
        save_recording(recording, record_to)
    att = attribute(trace.records, events, ort_start_ns=start_ns, markers=trace.markers, skip_runs=warmup)
    meta = {"variant": engine.variant.name, "backend": engine.backend.name, "precision": engine.variant.precision}
    df = cupti_frame(att, ix, optimized, meta)
    df.attrs["native_log"] = native.summary()
    return df


#: the profiled run's GPU timeline, on every row of a CUPTI table (``gpu_timeline`` means per run)
GPU_COLUMNS = ["gpu_busy_ms", "gpu_span_ms", "gpu_idle_share"]


def cupti_frame(att: Mapping, ix, optimized: Mapping[str, Any], meta: Mapping[str, Any]):
    """The per-layer table of an :func:`attribute` result: ``COLUMNS`` + :data:`CUPTI_EXTRA`, how it was
    measured in ``RUN_COLUMNS`` (source ``cupti``) and the GPU timeline in :data:`GPU_COLUMNS` on every row,
    so ``pd.concat`` of several tables keeps what ``coverage`` needs. ``attrs`` keep the diagnostics
    (``gpu``, ``alignment``, ``counts``, ``cpu_nodes``)."""
    from .layers import layer_frame, run_columns

    df = layer_frame([{**meta, **r} for r in layer_rows(att, ix, optimized)], CUPTI_EXTRA)
    tl = att["timeline"]
    run_columns(df, source="cupti", iterations=int(att["runs"]), profiled_run_ms=float(tl["host_run_ms"]))
    df["gpu_busy_ms"], df["gpu_span_ms"], df["gpu_idle_share"] = tl["busy_ms"], tl["span_ms"], tl["idle_share"]
    df.attrs.update(profiled_run_ms=tl["host_run_ms"], iterations=att["runs"], source="cupti",
                    time_basis="cupti-gpu", gpu=tl, alignment=att["alignment"], counts=att["counts"],
                    cpu_nodes=cpu_nodes(att))
    return df


def trt_cross_check(records: list[Mapping], iterations: int, iprofiler_ms: float) -> dict:
    """Σ GPU time of the device records traced during TensorRT's profiled runs (per iteration) against
    Σ IProfiler layer time: ``{"gpu_ms", "iprofiler_ms", "ratio", "kernels_per_iter"}``."""
    dev = [r for r in records if r["kind"] in DEVICE_KINDS]
    gpu_ms = sum(int(r["end"]) - int(r["start"]) for r in dev) / 1e6 / max(iterations, 1)
    return {"gpu_ms": gpu_ms, "iprofiler_ms": iprofiler_ms,
            "ratio": iprofiler_ms / gpu_ms if gpu_ms > 0 else float("nan"),
            "kernels_per_iter": len(dev) / max(iterations, 1)}


def _iobinding(sess, feeds: Mapping[str, np.ndarray], device_id: int):
    """Inputs copied to the GPU once and outputs bound on the GPU, as the latency run does (the profiled
    run then times the same work: no host<->device copies per iteration)."""
    import onnxruntime as ort

    io = sess.io_binding()
    keep = []  # the OrtValues must outlive the binding
    for i in sess.get_inputs():
        ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds[i.name]), "cuda", device_id)
        keep.append(ov)
        io.bind_ortvalue_input(i.name, ov)
    for o in sess.get_outputs():
        io.bind_output(o.name, "cuda", device_id)
    return io, keep


def save_recording(recording: Mapping, path: str | os.PathLike) -> Path:
    from ..fsutil import atomic_write_bytes

    data = gzip.compress(json.dumps(recording, separators=(",", ":")).encode(), mtime=0)
    return atomic_write_bytes(path, data)


def load_recording(path: str | os.PathLike) -> dict:
    """A recording written by ``record_to`` (gzip JSON, format ``workbench-cupti-recording/1``)."""
    with gzip.open(path, "rt") as f:
        rec = json.load(f)
    if rec.get("format") != "workbench-cupti-recording/1":
        raise RunError(f"{path}: not a workbench CUPTI recording")
    return rec


def attribute_recording(rec: Mapping) -> dict:
    return attribute(rec["records"], rec["ort_events"], ort_start_ns=int(rec["ort_start_ns"]),
                     markers=rec["markers"], skip_runs=int(rec.get("skip_runs", 0)))
