"""Per-layer timings as one tidy DataFrame, for ONNX Runtime and TensorRT engines.

Columns (:data:`COLUMNS`): ``variant, backend, precision, layer, layer_type, onnx_nodes, onnx_node,
provider, time_ms, share, calls, mapped_by`` plus backend details (``shapes`` for ORT; ``tactic``,
``in_precision``, ``out_precision``, ``in_format``, ``out_format`` for TensorRT). ``time_ms`` is the mean
time per iteration, ``share`` its fraction of the table's total, ``calls`` kernel launches per iteration.

Profiled runs are separate from latency runs: profilers add overhead, so :func:`profile` measures
latency first on the engine as built, then the per-layer table in a separate profiled run, and
:func:`coverage` compares the two (Σ layers / end-to-end; outside :data:`COVERAGE_GOAL`–:data:`COVERAGE_UPPER`
is flagged, with the reason).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BackendUnavailable, RunError, UsageError
from ..logs import captures_native_log
from .latency import LatencyResult, measure_latency
from .mapping import (UNMAPPED, GraphIndex, name_nodes, ort_fused_nodes, ort_nchwc_sum, ort_nchwc_tensor,
                      strip_ort_suffix, strip_trt_profile_suffix, trt_layer_nodes)

COLUMNS = ["variant", "backend", "precision", "layer", "layer_type", "onnx_nodes", "onnx_node", "provider",
           "time_ms", "share", "calls", "mapped_by"]
ORT_EXTRA = ["shapes"]
TRT_EXTRA = ["tactic", "in_precision", "out_precision", "in_format", "out_format"]
#: how the table was measured, on every row (kept by ``pd.concat``, unlike ``DataFrame.attrs``; the
#: per-row ``time_basis`` column is in the extras): the
#: profiler, what its times are, profiled iterations, and (ORT) the mean run time inside the profiled run
#: and whether ORT's layout optimizers were on
RUN_COLUMNS = ["source", "iterations", "profiled_run_ms", "layout_optimizations"]
COVERAGE_GOAL = 0.9
#: ORT's NCHWc layout transformer (x86 CPU, ORT_ENABLE_ALL) names each node it rewrites ``<tensor>_nchwc``
#: and rewires tensors through reorder nodes; ``layout_optimizations=False`` disables it.
ORT_LAYOUT_OPTIMIZERS = ("NchwcTransformer",)
_SUBGRAPH_OPS = {"If", "Loop", "Scan"}


def _check(iterations: int, warmup: int) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations <= 0:
        raise UsageError(f"iterations must be a positive integer, got {iterations!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise UsageError(f"warmup must be an integer >= 0, got {warmup!r}")


def _frame(rows: list[dict], extra: list[str]):
    import pandas as pd

    df = pd.DataFrame(rows, columns=COLUMNS + extra)
    total = float(df["time_ms"].sum()) if len(df) else 0.0
    df["share"] = df["time_ms"] / total if total > 0 else 0.0
    return df.sort_values("time_ms", ascending=False, kind="stable").reset_index(drop=True)


def _run_columns(df, **run) -> None:
    """Write how the table was measured into :data:`RUN_COLUMNS` (same value on every row)."""
    for c in RUN_COLUMNS:
        df[c] = run.get(c)


def _named_index(engine) -> tuple[Any, GraphIndex]:
    proto = name_nodes(engine.variant.model.proto_with_data())
    return proto, GraphIndex.of(proto)


# ------------------------------------------------------------------------------------ ONNX Runtime
def parse_ort_trace(events: list[dict], *, skip_runs: int = 0) -> tuple[dict[str, dict], int, float]:
    """Aggregate ORT profiler events (Chrome trace: ``cat`` "Node", ``name`` ``<node>_kernel_time``,
    ``dur`` in µs, ``args.op_name`` / ``args.provider`` / ``args.input_type_shape``).

    Only kernels inside ``model_run`` events after the first ``skip_runs`` (the warm-ups) count.
    Kernels of If/Loop/Scan nodes include their subgraphs' kernels, which ORT also reports on their own;
    the parent keeps only its self time so nothing is counted twice.
    Returns ({kernel: {dur_us, count, op, provider, shapes}}, timed runs, mean model_run ms).
    """
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    runs = runs[skip_runs:]
    if not runs:
        raise RunError("the ONNX Runtime profile holds no timed model_run event")
    starts = np.array([r[0] for r in runs])
    ends = np.array([r[1] for r in runs])
    kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    kept = []
    for e in kernels:
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i >= 0 and e["ts"] + e["dur"] <= ends[i]:
            kept.append(e)
    out: dict[str, dict] = {}
    for e in kept:
        args = e.get("args", {})
        dur = float(e["dur"])
        if args.get("op_name") in _SUBGRAPH_OPS:
            lo, hi, tid = e["ts"], e["ts"] + e["dur"], e.get("tid")
            dur -= sum(float(k["dur"]) for k in kept if k is not e and k.get("tid") == tid
                       and k["ts"] >= lo and k["ts"] + k["dur"] <= hi)
        name = e["name"][: -len("_kernel_time")]
        rec = out.setdefault(name, {"dur_us": 0.0, "count": 0, "op": args.get("op_name", ""),
                                    "provider": str(args.get("provider", "")).replace("ExecutionProvider", ""),
                                    "shapes": shape_text(args.get("input_type_shape"))})
        rec["dur_us"] += max(dur, 0.0)
        rec["count"] += 1
    mean_run_ms = float(np.mean(ends - starts)) / 1000.0
    return out, len(runs), mean_run_ms


def shape_text(ts) -> str:
    """ORT trace ``input_type_shape`` entries as ``float[1, 3, 8, 8] ...`` text (also used by measure.cupti)."""
    if not ts:
        return ""
    parts = []
    for d in ts:
        for dt, shp in d.items():
            parts.append(f"{dt}{list(shp)}")
    return " ".join(parts)


def _ort_session(engine, proto, tmp: Path, layout_optimizations: bool):
    import onnxruntime as ort

    from ..backends.base import BuildOptions

    threads = int((engine.record.options or {}).get("threads", 0) or 0) if engine.record is not None else 0
    so = engine.backend.session_options(BuildOptions(threads=threads, progress=False))
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / "ort_profile")
    so.optimized_model_filepath = str(tmp / "optimized.onnx")
    providers = engine.backend.providers_for(engine.variant)
    disabled = [] if layout_optimizations else list(ORT_LAYOUT_OPTIMIZERS)
    try:
        return ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=providers,
                                    disabled_optimizers=disabled)
    except Exception as e:
        raise RunError(f"ONNX Runtime could not create the profiling session for {engine.variant.name}: "
                       f"{str(e).strip().splitlines()[-1]}") from e


def _optimized_nodes(path: Path) -> dict[str, Any]:
    import onnx

    if not path.is_file():
        return {}
    try:
        opt = onnx.load(str(path), load_external_data=False)
    except Exception:
        return {}
    return {n.name: n for n in opt.graph.node}


def ort_layer_rows(stats: dict[str, dict], runs: int, ix: GraphIndex, optimized: Mapping[str, Any]) -> list[dict]:
    """Rows (without variant/backend/precision) for aggregated ORT kernels, mapped to ONNX nodes:

    * a kernel named after an ONNX node (exactly, or with ORT's ``_token_N`` suffix) stands for it;
      an NCHWc kernel ``<tensor>_nchwc`` stands for the producer of ``<tensor>``;
    * the nodes it covers are found by tensor lineage (:func:`~workbench.measure.mapping.ort_fused_nodes`)
      in the variant graph, using the optimized graph ORT saved for the kernel's inputs/outputs;
    * kernels ORT inserted (layout reorders/transposes) take the canonical node of the first mapped
      consumer in the optimized graph (``mapped_by="neighbour"``, ``onnx_nodes`` empty), else
      ``onnx_node = "<unmapped>"``.
    """
    own: dict[str, str | None] = {}
    for k in stats:
        base = strip_ort_suffix(k)
        t = ort_nchwc_tensor(k)
        own[k] = k if k in ix else base if base in ix else ix.producer.get(t) if t else None
    anchors = {v for v in own.values() if v}
    mapped: dict[str, tuple[list[str], str]] = {}
    claimed = set(anchors)  # nodes some kernel already stands for
    # kernels named after a node first: a kernel ORT inserted (own None, e.g. the ReorderOutput that writes an
    # NCHWc kernel's output back as the original tensor) must not claim the nodes those kernels cover
    for k in sorted(stats, key=lambda k: own[k] is None):
        opt_node, t = optimized.get(k), ort_nchwc_tensor(k)
        nodes: list[str] = []
        op = stats[k]["op"]
        if t and t in ix.producer:
            stop = list(opt_node.input) if opt_node is not None else []
            nodes = ort_fused_nodes([t], stop, ix, anchors, op, own=own[k])
            if opt_node is not None and op == "Conv" and len(opt_node.input) >= 4:
                nodes += ort_nchwc_sum(t, ix, anchors)
        elif opt_node is not None:
            outs = [o for o in opt_node.output if own[k] or ix.producer.get(o) not in claimed]
            nodes = ort_fused_nodes(outs, list(opt_node.input), ix, anchors if own[k] else claimed, op, own=own[k])
        if own[k] and own[k] not in nodes:
            nodes = sorted(set(nodes) | {own[k]}, key=lambda n: ix.order[n])
        how = "unmapped" if not nodes else "name" if nodes == [k] else "fusion"
        mapped[k] = (nodes, how)
        claimed.update(nodes)
    consumers: dict[str, list[str]] = {}
    for n in optimized.values():
        for x in n.input:
            consumers.setdefault(x, []).append(n.name)
    rows = []
    for k, s in stats.items():
        nodes, how = mapped[k]
        canon = ix.anchor(nodes) if nodes else UNMAPPED
        if not nodes:
            canon, how = _neighbour(k, optimized, consumers, mapped, ix)
        rows.append({"layer": k, "layer_type": s["op"], "onnx_nodes": nodes, "onnx_node": canon,
                     "provider": s["provider"], "time_ms": s["dur_us"] / 1000.0 / runs,
                     "calls": s["count"] / runs, "mapped_by": how, "shapes": s["shapes"]})
    return rows


def _neighbour(k: str, optimized, consumers, mapped, ix: GraphIndex) -> tuple[str, str]:
    """Canonical node of the first mapped consumer downstream of kernel ``k`` in the optimized graph."""
    seen, frontier = {k}, [k]
    while frontier:
        nxt = []
        for n in frontier:
            node = optimized.get(n)
            for t in (node.output if node is not None else []):
                for c in consumers.get(t, []):
                    if c in seen:
                        continue
                    if mapped.get(c, ([], ""))[0]:
                        return ix.anchor(mapped[c][0]), "neighbour"
                    seen.add(c)
                    nxt.append(c)
        frontier = nxt
    return UNMAPPED, "unmapped"


def profile_layers_ort(engine, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                       layout_optimizations: bool = True, progress: bool = False, timing: str = "auto"):
    """Per-layer table of an ONNX Runtime engine from a separate profiled session (see module doc).

    The profiled session is built from the engine's variant with the engine's session options plus
    ``enable_profiling``; the trace and the optimized model go to a temp folder that is deleted.
    ``layout_optimizations=False`` disables ORT's NCHWc layout transformer (kernels then keep ONNX node
    names, but the profiled graph differs from the engine's on x86 CPUs).

    On the CUDA provider, ``timing="auto"`` (default) measures GPU time per node from CUPTI when
    ``cupti-python`` and a GPU are there (:func:`workbench.measure.cupti.profile_layers_ort_cupti`), else
    ORT's host-side times of the kernel launches (``time_basis`` ``host-launch``, with
    ``attrs["cupti_unavailable"]`` saying why); ``"gpu"`` insists on CUPTI, ``"host"`` forces the profiler.
    """
    if timing not in ("auto", "gpu", "host"):
        raise UsageError(f"timing must be 'auto', 'gpu' or 'host', got {timing!r}")
    on_cuda = bool(engine.on_cuda)
    cupti_reason = None
    if on_cuda and timing != "host":
        from .cupti import cupti_unavailable, profile_layers_ort_cupti

        cupti_reason = cupti_unavailable()
        if cupti_reason is None:
            return profile_layers_ort_cupti(engine, feeds, iterations=iterations, warmup=warmup, progress=progress,
                                            layout_optimizations=layout_optimizations)
        if timing == "gpu":
            raise BackendUnavailable(f"GPU per-layer timing needs CUPTI: {cupti_reason}")
    elif timing == "gpu":
        raise BackendUnavailable("GPU per-layer timing (CUPTI) applies to ONNX Runtime's CUDA provider; this "
                                 "session runs on the CPU")
    _check(iterations, warmup)
    proto, ix = _named_index(engine)
    with tempfile.TemporaryDirectory(prefix="workbench-prof-") as td:
        tmp = Path(td)
        sess = _ort_session(engine, proto, tmp, layout_optimizations)
        names = [i.name for i in sess.get_inputs()]
        missing = [n for n in names if n not in feeds]
        if missing:
            raise RunError(f"missing input(s) {missing} for {engine.variant.name}")
        prepared = {n: np.ascontiguousarray(feeds[n]) for n in names}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=warmup + iterations, desc=f"profile {engine.variant.name}", unit="it", leave=False)
        try:
            for _ in range(warmup + iterations):
                sess.run(None, prepared)
                if bar is not None:
                    bar.update(1)
        except Exception as e:
            raise RunError(f"ONNX Runtime failed while profiling {engine.variant.name}: {e}") from e
        finally:
            if bar is not None:
                bar.close()
        trace = Path(sess.end_profiling())
        try:
            events = json.loads(trace.read_text())
        finally:
            trace.unlink(missing_ok=True)
        stats, runs, run_ms = parse_ort_trace(events, skip_runs=warmup)
        optimized = _optimized_nodes(tmp / "optimized.onnx")
        del sess
    rows = ort_layer_rows(stats, runs, ix, optimized)
    meta = {"variant": engine.variant.name, "backend": engine.backend.name, "precision": engine.variant.precision}
    on_gpu = any(r["provider"] != "CPU" for r in rows)
    basis = "host-launch" if on_gpu else "host"
    df = _frame([{**meta, **r, "time_basis": "host" if r["provider"] == "CPU" else basis} for r in rows],
                ORT_EXTRA + ["time_basis"])
    _run_columns(df, source="onnxruntime-profiler", iterations=int(runs), profiled_run_ms=float(run_ms),
                 layout_optimizations=bool(layout_optimizations))
    df.attrs.update(profiled_run_ms=run_ms, iterations=runs, source="onnxruntime-profiler",
                    layout_optimizations=layout_optimizations,
                    time_basis=basis)
    if cupti_reason:
        df.attrs["cupti_unavailable"] = cupti_reason
    return df


# ---------------------------------------------------------------------------------------- TensorRT
def make_trt_profiler(trt):
    """An ``IProfiler`` that sums ``report_layer_time(layer_name, ms)`` per layer over iterations.

    TensorRT calls ``report_layer_time`` once per layer for each ``executeV2()``/``enqueueV3()`` while
    the profiler is attached (TensorRT 10 C++ API, ``IProfiler``); with ``ProfilingVerbosity.NONE`` the
    layer name is the layer's decimal index. ``times`` maps layer name → [total ms, calls]."""

    class LayerTimes(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times: dict[str, list] = {}

        def report_layer_time(self, layer_name, ms):
            rec = self.times.get(layer_name)
            if rec is None:
                self.times[layer_name] = [float(ms), 1]
            else:
                rec[0] += float(ms)
                rec[1] += 1

    return LayerTimes()


def _format_text(t: Mapping[str, Any]) -> str:
    """A layer tensor's format and type: TensorRT 10 writes one ``Format/Datatype`` string; TensorRT 11 splits
    it into ``Datatype`` and ``Format`` (migration guide "IEngineInspector JSON Output"; Polygraphy's TRT
    engine extractor reads both)."""
    if "Format/Datatype" in t:
        return str(t["Format/Datatype"])
    dtype = t.get("Datatype", t.get("DataType", ""))
    return " ".join(str(v) for v in (dtype, t.get("Format", "")) if v)


def _io_field(tensors: list) -> str:
    return ", ".join(_format_text(t) for t in tensors or [] if isinstance(t, dict))


def parse_trt_layer_info(info: Mapping[str, Any] | str) -> list[dict]:
    """Layer records from the engine inspector's JSON (``get_engine_information(LayerInformationFormat
    .JSON)``: ``{"Layers": [...], "Bindings": [...]}``; each layer with ``Name``, ``LayerType``,
    ``Inputs``/``Outputs`` (``Name``, ``Dimensions``, ``Format/Datatype``), ``TacticName``, ``Metadata``
    when built with ``ProfilingVerbosity.DETAILED``; with lower verbosity ``Layers`` holds bare names).
    ``Format/Datatype`` (TensorRT 10) reads like ``Row major linear FP32`` / ``Channel major FP16 format
    where...``; TensorRT 11 gives ``Datatype`` and ``Format`` separately (read type first, then format).
    ``*_precision`` is the first FP32/FP16/BF16/Int8/FP8/Int32-like token, ``*_format`` the full text."""
    if isinstance(info, str):
        info = json.loads(info)
    out = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):
            out.append({"name": layer, "layer_type": "", "tactic": "", "metadata": None,
                        "in_precision": "", "out_precision": "", "in_format": "", "out_format": ""})
            continue
        ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
        out.append({"name": layer.get("Name", ""), "layer_type": layer.get("LayerType", ""),
                    "tactic": layer.get("TacticName", layer.get("TacticValue", "")),
                    "metadata": layer.get("Metadata"),
                    "in_precision": ", ".join(_precision_of(t) for t in ins if isinstance(t, dict)),
                    "out_precision": ", ".join(_precision_of(t) for t in outs if isinstance(t, dict)),
                    "in_format": _io_field(ins),
                    "out_format": _io_field(outs)})
    return out


#: engine-inspector dtype words that are not registered precisions (index/bool tensors, sub-byte types)
_OTHER_DTYPE_TOKENS = {"int32": "int32", "int64": "int64", "bool": "bool", "uint8": "uint8", "int4": "int4",
                       "fp4": "fp4", "float4": "fp4"}


def precision_tokens() -> dict[str, str]:
    """Dtype word (lower case) in TensorRT layer information -> precision: each registered precision's
    name and ``aliases`` (registry), then the non-precision dtypes."""
    from ..precision import REGISTRY

    out = {}
    for name, r in REGISTRY.items():
        out[name] = name
        out.update({a.lower(): name for a in r.aliases})
    return {**out, **_OTHER_DTYPE_TOKENS}


def _precision_of(t: Mapping[str, Any]) -> str:
    text = _format_text(t)
    tokens = precision_tokens()
    for tok in text.replace(",", " ").split():
        p = tokens.get(tok.lower())
        if p:
            return p
    return ""


def trt_layer_rows(times: Mapping[str, tuple[float, int]], iterations: int, layer_info: list[dict],
                   ix: GraphIndex | None) -> list[dict]:
    """Rows from profiler sums (layer → (total ms, calls)) joined with inspector layer records by name
    (a `` [profile N]`` suffix is ignored when joining)."""
    info = {}
    for rec in layer_info:
        info.setdefault(rec["name"], rec)
        info.setdefault(strip_trt_profile_suffix(rec["name"]), rec)
    rows = []
    for name, (total, calls) in times.items():
        rec = info.get(name) or info.get(strip_trt_profile_suffix(name)) or {}
        nodes, kind = trt_layer_nodes(name, rec.get("metadata"), ix)
        how = ("metadata" if rec.get("metadata") else kind) if nodes else "unmapped"
        canon = ix.anchor(nodes) if (ix is not None and nodes) else (nodes[0] if nodes else UNMAPPED)
        rows.append({"layer": name, "layer_type": rec.get("layer_type", ""), "onnx_nodes": nodes,
                     "onnx_node": canon, "provider": "GPU", "time_ms": total / iterations,
                     "calls": calls / iterations, "mapped_by": how,
                     **{k: rec.get(k, "") for k in TRT_EXTRA}})
    return rows


def profile_layers_trt(engine, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                       progress: bool = False, cupti_check: bool = True):
    """Per-layer table of a TensorRT engine (``workbench.backends.tensorrt.TrtEngine``): an IProfiler
    attached to a separate execution context (:meth:`TrtEngine.bound_context`, dropped afterwards:
    TensorRT cannot detach a profiler) for ``iterations`` synchronous runs after ``warmup`` plain runs,
    joined with the engine inspector's JSON (layer type, tactic, precisions, formats, origin nodes).

    Where CUPTI is available (:mod:`workbench.measure.cupti`), the same profiled runs are traced and
    ``df.attrs["cupti_check"]`` compares Σ IProfiler layer time with Σ kernel/copy GPU time (TensorRT
    launches all of a layer's kernels inside one ``enqueueV3`` call, so kernels are not attributed per
    layer here; IProfiler stays the per-layer basis)."""
    _check(iterations, warmup)
    trt = engine.backend.trt
    proto, ix = _named_index(engine)
    engine.stage(feeds)
    ctx = engine.bound_context()
    prof = make_trt_profiler(trt)
    from .cupti import ActivityTrace, cupti_unavailable

    cross = cupti_unavailable() is None and cupti_check
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc=f"profile {engine.variant.name}", unit="it", leave=False)
    try:
        for _ in range(warmup):
            engine.enqueue(ctx)
        engine.synchronize()
        ctx.profiler = prof
        with (ActivityTrace() if cross else contextlib.nullcontext()) as trace:
            for _ in range(iterations):
                engine.enqueue(ctx)  # with a profiler attached, TensorRT reports per layer for each execution
                engine.synchronize()
                if bar is not None:
                    bar.update(1)
    finally:
        engine.release_context(ctx)  # the profiled context goes; the engine's own context never had a profiler
        if bar is not None:
            bar.close()
    layer_info = parse_trt_layer_info(engine.inspector_json())
    rows = trt_layer_rows({k: (v[0], v[1]) for k, v in prof.times.items()}, iterations, layer_info, ix)
    meta = {"variant": engine.variant.name, "backend": engine.backend.name, "precision": engine.variant.precision}
    df = _frame([{**meta, **r, "time_basis": "tensorrt-iprofiler"} for r in rows], TRT_EXTRA + ["time_basis"])
    _run_columns(df, source="tensorrt-iprofiler", iterations=int(iterations))
    df.attrs.update(iterations=iterations, source="tensorrt-iprofiler", time_basis="tensorrt-iprofiler")
    if cross:
        from .cupti import trt_cross_check

        df.attrs["cupti_check"] = trt_cross_check(trace.records, iterations, float(df["time_ms"].sum()))
    return df


# --------------------------------------------------------------------------------------- dispatch
@captures_native_log
def profile_layers(engine, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                   progress: bool = False, timing: str = "auto", **opts):
    """Per-layer timings of ``engine`` on ``feeds`` as a tidy DataFrame (columns :data:`COLUMNS` + extras).

    Example::

        eng = get_backend("onnxruntime").build(Variant.of(load("m.onnx")))
        df = profile_layers(eng, synthetic_inputs(eng.variant.model), iterations=20)
        df.groupby("onnx_node").time_ms.sum().sort_values()

    ``timing``: ``"auto"`` uses GPU time from CUPTI for ONNX Runtime CUDA engines when ``cupti-python``
    and a GPU are there (:mod:`workbench.measure.cupti`), else ORT's host-side profiler; ``"gpu"``
    insists on CUPTI; ``"host"`` forces ORT's profiler. Each row's ``time_basis`` says which it used.
    """
    if timing not in ("auto", "gpu", "host"):
        raise UsageError(f"timing must be 'auto', 'gpu' or 'host', got {timing!r}")
    # each engine implements its own profiler (Engine.profile_layers): ORT -> profile_layers_ort (which picks
    # CUPTI GPU time or its host profiler by ``timing``), TensorRT -> profile_layers_trt (IProfiler, device
    # time; ``timing`` does not apply); other engines raise BackendUnavailable
    return engine.profile_layers(feeds, iterations=iterations, warmup=warmup, progress=progress, timing=timing, **opts)


COVERAGE_UPPER = 1.1


@dataclass
class Coverage:
    """Σ per-layer time vs end-to-end latency (p50 or mean) of a separate latency run.

    ``basis`` is the per-layer table's timing basis (``cupti-gpu``, ``host``, ``host-launch``,
    ``tensorrt-iprofiler``); a ratio outside [``goal``, ``upper``] (0.9–1.1) is ``flagged`` and ``reason``
    says why, from what the profiled run measured (GPU idle share, host-timed launches...)."""

    variant: str
    layers_ms: float
    e2e_ms: float
    ratio: float
    goal: float = COVERAGE_GOAL
    profiled_run_ms: float | None = None  # mean run time inside the profiled run itself (ORT), if known
    upper: float = COVERAGE_UPPER
    basis: str = ""
    reason: str = ""
    gpu_busy_ms: float | None = None  # CUPTI: mean GPU busy time (union of device intervals) per run
    other_basis_ms: float = 0.0  # Σ of rows on another basis, not in ``layers_ms`` (CPU nodes of a CUDA session)

    @property
    def flagged(self) -> bool:
        return not (self.goal <= self.ratio <= self.upper)

    @property
    def in_run(self) -> float | None:
        """Σ layers / run time of the profiled run itself: kernel time vs framework time, free of the
        drift between the separate latency and profiled runs."""
        if not self.profiled_run_ms:
            return None
        return self.layers_ms / self.profiled_run_ms

    def to_json(self) -> dict:
        return {"variant": self.variant, "layers_ms": self.layers_ms, "e2e_ms": self.e2e_ms,
                "coverage": self.ratio, "goal": self.goal, "upper": self.upper, "flagged": self.flagged,
                "basis": self.basis, "reason": self.reason, "gpu_busy_ms": self.gpu_busy_ms,
                "other_basis_ms": self.other_basis_ms,
                "profiled_run_ms": self.profiled_run_ms, "in_run": self.in_run}


def coverage_reason(ratio: float, basis: str, attrs: Mapping[str, Any], goal: float = COVERAGE_GOAL,
                    upper: float = COVERAGE_UPPER) -> str:
    """Why Σ layers / end-to-end is outside [goal, upper], from the profiled run's own measurements
    (empty when inside)."""
    if ratio != ratio:
        return "no end-to-end time to compare with"
    if goal <= ratio <= upper:
        return ""
    gpu = attrs.get("gpu") or {}
    if basis == "cupti-gpu":
        idle = float(gpu.get("idle_share", 0.0))
        cpu = attrs.get("cpu_nodes") or {}
        span = float(gpu.get("span_ms", 0.0))
        if ratio < goal and idle > 0.1 and span > 0 and float(cpu.get("ms", 0.0)) > 0.25 * idle * span:
            names = ", ".join(n for n, _ in cpu.get("top", []))
            return (f"the GPU was idle {idle:.0%} of each profiled run, waiting for {cpu.get('count', 0)} node(s) ONNX "
                    f"Runtime ran on its CPU provider ({float(cpu['ms']):.3g} ms host time per run: {names}) and the "
                    f"copies around them; Σ layers counts GPU work only")
        if ratio < goal:
            if idle > 0.1:
                return (f"the GPU was idle {idle:.0%} of each profiled run between kernels: launch-bound (host "
                        f"work per node exceeds its kernel time); Σ layers counts GPU work only")
            return ("GPU work is shorter than the end-to-end latency by more than the idle time between kernels: "
                    "host time before the first kernel or after the last (input binding, synchronization)")
        return ("GPU time in the profiled run exceeds the latency run's end-to-end time: kernels ran slower "
                "under tracing or concurrent kernels overlapped (Σ counts overlap twice)")
    if basis == "host-launch":
        return ("host-side timing of asynchronous CUDA launches: each node's time is its launch cost on the CPU, "
                "not its GPU time (install cupti-python for GPU per-layer time)")
    if basis == "tensorrt-iprofiler":
        return ("TensorRT's IProfiler times layers with CUDA events around each layer; "
                + ("Σ is below the latency: time between layers (reformatting, launch gaps) is not in any layer"
                   if ratio < goal else "event overhead per layer inflates small layers"))
    if ratio < goal:
        return "time outside kernels (framework overhead, copies, scheduling) that no layer row shows"
    return "the profiled run was slower than the latency run (profiler overhead or a busy machine)"


def coverage(layers_df, latency: LatencyResult, *, stat: str = "mean_ms", goal: float = COVERAGE_GOAL,
             upper: float = COVERAGE_UPPER) -> Coverage:
    """Σ ``time_ms`` of the per-layer table divided by the end-to-end ``stat`` (default the mean, as
    per-layer times are means) of ``latency``. Only rows on the table's basis (``attrs["time_basis"]``)
    are summed: in a CUPTI table, nodes ORT ran on its CPU provider keep their host time but are not
    added to GPU time (``other_basis_ms``). A ratio outside [``goal``, ``upper``] (0.9–1.1) is flagged,
    with the reason (:func:`coverage_reason`): below, time the table does not show (GPU idle between
    kernels, framework overhead); above, per-layer times that overstate (host-timed launches).

    Works on concatenated tables too (several variants, a ``FlowResult.layers``): only ``latency.variant``'s
    rows are summed, and the basis, GPU timeline and CPU-provider nodes come from the columns
    (``time_basis``, ``gpu_*``) when ``attrs`` (which ``pd.concat`` drops) lack them."""
    if "variant" in layers_df.columns and layers_df["variant"].nunique() > 1:
        layers_df = layers_df[layers_df["variant"] == latency.variant]
    facts = _run_facts(layers_df)
    basis = str(facts.get("time_basis", ""))
    on_basis = layers_df
    if basis and "time_basis" in layers_df.columns:
        # rows on another basis (CPU-provider nodes of a CUDA session: host time, overlapping the asynchronous
        # GPU work) are listed in the table but not added to the GPU timeline
        on_basis = layers_df[layers_df["time_basis"] == basis]
    total = float(on_basis["time_ms"].sum())
    other = float(layers_df["time_ms"].sum()) - total
    e2e = float(latency.stats[stat])
    ratio = total / e2e if e2e > 0 else float("nan")
    run_ms = _profiled_run_ms(layers_df, latency.variant) or layers_df.attrs.get("profiled_run_ms")
    gpu = facts.get("gpu") or {}
    return Coverage(variant=latency.variant, layers_ms=total, e2e_ms=e2e, ratio=ratio, goal=goal,
                    profiled_run_ms=float(run_ms) if run_ms else None, upper=upper, basis=basis,
                    reason=coverage_reason(ratio, basis, facts, goal, upper),
                    gpu_busy_ms=float(gpu["busy_ms"]) if gpu.get("busy_ms") else None, other_basis_ms=other)


def _run_facts(layers_df) -> dict:
    """``time_basis``, ``gpu`` and ``cpu_nodes`` of a per-layer table: its ``attrs`` when it has them (a table
    as profiled), else read back from its columns (a concatenated or reloaded table)."""
    a = dict(layers_df.attrs)
    cols = layers_df.columns
    if not a.get("time_basis") and "time_basis" in cols:
        bases = set(layers_df["time_basis"].dropna().astype(str))
        main = bases - {"host"}
        a["time_basis"] = next(iter(main)) if len(main) == 1 else ("host" if bases == {"host"} else "")
    if not a.get("gpu") and "gpu_busy_ms" in cols and len(layers_df):
        row = layers_df.iloc[0]
        a["gpu"] = {"busy_ms": float(row["gpu_busy_ms"]), "span_ms": float(row["gpu_span_ms"]),
                    "idle_share": float(row["gpu_idle_share"])}
    if not a.get("cpu_nodes") and a.get("time_basis") == "cupti-gpu" and "provider" in cols:
        cpu = layers_df[(layers_df["provider"] == "CPU") & (layers_df.get("time_basis") == "host")]
        ms = cpu.groupby("onnx_node")["time_ms"].sum().sort_values(ascending=False)
        a["cpu_nodes"] = {"ms": float(ms.sum()), "count": int(len(ms)),
                          "top": [(str(n), round(float(v), 4)) for n, v in ms.head(4).items()]}
    return a


def _profiled_run_ms(layers_df, variant: str) -> float | None:
    """The profiled run's mean run time (column ``profiled_run_ms``) of ``variant``'s rows, if measured."""
    if "profiled_run_ms" not in layers_df.columns or not len(layers_df):
        return None
    rows = layers_df[layers_df["variant"] == variant] if "variant" in layers_df.columns else layers_df
    vals = (rows if len(rows) else layers_df)["profiled_run_ms"].dropna()
    return float(vals.iloc[0]) if len(vals) else None


@dataclass
class Profile:
    """Latency and per-layer results of one engine, measured in separate runs."""

    latency: LatencyResult
    layers: Any  # pandas.DataFrame
    coverage: Coverage


@captures_native_log
def profile(engine, feeds: Mapping[str, np.ndarray], *, warmup: int = 10, iterations: int = 100,
            time_budget_s: float | None = None, layer_iterations: int = 20, layer_warmup: int = 3,
            progress: bool = False) -> Profile:
    """Latency run, then a separate per-layer run, then their coverage."""
    lat = measure_latency(engine, feeds, warmup=warmup, iterations=iterations, time_budget_s=time_budget_s,
                          progress=progress)
    layers = profile_layers(engine, feeds, iterations=layer_iterations, warmup=layer_warmup, progress=progress)
    return Profile(latency=lat, layers=layers, coverage=coverage(layers, lat))


def save_layers_csv(df, path: str | os.PathLike) -> Path:
    """Write a per-layer table as CSV atomically (``onnx_nodes`` joined with ``;``)."""
    from ..fsutil import atomic_write_text

    out = df.copy()
    out["onnx_nodes"] = out["onnx_nodes"].map(lambda v: ";".join(v) if isinstance(v, (list, tuple)) else v)
    return atomic_write_text(path, out.to_csv(index=False))


# Public names of the helpers the CUPTI profiler (measure/cupti.py) shares with this module: it builds the
# same table from GPU activity records.
check_counts = _check
layer_frame = _frame
run_columns = _run_columns
named_index = _named_index
optimized_nodes = _optimized_nodes
ort_profiling_session = _ort_session
