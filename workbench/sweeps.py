"""Sweeps: many models × backends × precisions × shape sets, locally or on a Ray cluster.

    import workbench as wb
    res = wb.sweep(["a.onnx", "b.onnx"], "fp32,fp16,int8", "onnxruntime", calib="calib.npz",
                   data="test.npz", out_dir="sweep")                 # local, no extra service
    res = wb.sweep(..., executor="local-ray")                          # a Ray runtime in this process
    res = wb.sweep(..., executor="auto")                               # join a running Ray cluster
    res.to_frame(); res.heatmap(); res.pareto()

Each **cell** (model content hash × backend × precision × shape set) goes through the one build path
(:func:`workbench.builds.build_variants`), is timed with :func:`workbench.measure_latency` and compared
with the model's FP32 reference on ONNX Runtime CPU over the same data (:func:`compare_engines`) — the
same calls and records as single runs. Finished cells are written to ``DIR/cells/<key>.json`` as they
finish (the key is a content hash of everything that decides the result), so a rerun skips them and a
killed sweep resumes where it stopped. A failing cell (bad model, unsupported precision, a recipe or
build error, out of memory) is recorded with its reason and the sweep goes on. ``DIR/sweep.json``,
``DIR/sweep.csv`` and ``DIR/sweep.html`` (heatmap model × precision, Pareto per model) gather them.

With Ray each cell is one task. Models and data travel through Ray's object store (``ray.put`` once),
never through a shared filesystem; results come back to the driver, which alone writes ``DIR``. A task
whose worker dies is retried by Ray (``max_retries``); one lost for good is recorded as ``lost`` and
run again by the next sweep. **Timing integrity**: a cell on a GPU backend asks for ``num_gpus=1`` (Ray
gives it a GPU of its own); a cell on a CPU backend asks for ``cpus_per_cell`` CPUs, by default every CPU
of the smallest node, so two CPU timings never share cores. Each row records where it ran (host, pid,
GPU ids, Ray node).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import UsageError, WorkbenchError
from .fsutil import atomic_write_json, atomic_write_text, ensure_dir, json_safe

SCHEMA_VERSION = 1
#: tidy columns of :meth:`SweepResult.to_frame` (accuracy columns are NaN where no data was compared)
COLUMNS = ["model", "model_hash", "backend", "precision", "shapes", "batch_size", "status", "reason", "p50_ms", "p90_ms",
           "p99_ms", "mean_ms", "throughput", "batch", "speedup", "cosine", "snr_db", "max_abs", "top1",
           "top1_agreement", "build_time_s", "cached", "host", "pid", "gpu", "ray_node", "started_at", "finished_at",
           "duration_s", "key"]
#: statuses of a finished cell (kept and skipped on rerun); "lost" cells are run again
FINISHED = ("ok", "skipped", "failed")


# ------------------------------------------------------------------------------------------ cells
@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    model: str          # display name (file stem)
    model_hash: str
    backend: str
    precision: str
    shapes: str         # a --shapes spec, "" for the model's own/synthetic shapes
    batch: int | None = None  # samples per run on a dynamic batch axis (None: the data's/default batch)

    def key(self, context: dict) -> str:
        payload = json.dumps({**asdict(self), **context}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass
class SweepConfig:
    """What every cell shares (part of each cell's key, with the cell's own data/calibration hashes)."""

    labels: str | None = None
    iterations: int = 50
    warmup: int = 5
    limit: int | None = 64
    threads: int = 0

    def context(self) -> dict:
        from . import __version__

        return {**asdict(self), "workbench": __version__, "schema": SCHEMA_VERSION}


def _per_model(value: Any, model: Any) -> Any:
    """``value`` for one model: a mapping is looked up by the model's path (as given, or its file name)."""
    if isinstance(value, dict):
        for k in (model, str(model), Path(str(model)).name, Path(str(model)).stem):
            if k in value:
                return value[k]
        return None
    return value


def _file_bytes(path: Any, what: str) -> tuple[bytes | None, str | None]:
    if path is None:
        return None, None
    import stat

    from .errors import DataError

    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} {p} is not a regular file; refusing to read it")
    data = p.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _model_source(m: Any) -> tuple[str, bytes]:
    """(display name, serialized model) for a path / bytes / Model; models keeping weights in external
    data files cannot travel as one blob and are refused with a hint."""
    from .model import load

    model = load(m)
    if model.has_external_data:
        raise UsageError(f"{model.name}: a model with external data files cannot travel as one blob (cells get "
                         f"models through Ray's object store, never a shared filesystem)",
                         hint="save it with its weights inline (models under 2 GB) and sweep that file")
    name = Path(str(m)).stem if isinstance(m, (str, os.PathLike)) else (model.name or "model")
    return name, model.proto.SerializeToString()


# ------------------------------------------------------------------------------------------ one cell
def _where() -> dict:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    node = ""
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            node = ctx.get_node_id()
            gpus = ",".join(str(g) for g in ray.get_gpu_ids()) or gpus
    except Exception:
        pass
    return {"host": socket.gethostname(), "pid": os.getpid(), "gpu": gpus, "ray_node": node}


def _maybe_crash(key: str) -> None:
    """Fault injection for tests and drills: ``WB_SWEEP_CRASH_ONCE=<marker file>`` makes the first cell that
    runs kill its own worker process (``os._exit``) after creating the marker; later attempts run normally."""
    marker = os.environ.get("WB_SWEEP_CRASH_ONCE")
    if marker and not os.path.exists(marker):
        Path(marker).write_text(key)
        os._exit(17)


def run_cell(cell: Cell, model_bytes: bytes, data_bytes: bytes | None, calib_bytes: bytes | None,
             labels_key: str | None, config: SweepConfig, key: str) -> dict:
    """Build, time and compare one cell; returns its row (and records) as JSON-able data.

    Never raises for a problem of the cell's own input: it is the row's ``status``/``reason``."""
    t0 = time.perf_counter()
    _maybe_crash(key)
    row: dict[str, Any] = {**asdict(cell), "batch_size": cell.batch, "key": key, **_where(), "started_at": time.time()}
    with tempfile.TemporaryDirectory(prefix="workbench-cell-") as td:
        try:
            row.update(_run_cell(cell, model_bytes, data_bytes, calib_bytes, labels_key, config, Path(td)))
        except WorkbenchError as e:
            row.update(status="failed", reason=str(e))
        except MemoryError:
            row.update(status="failed", reason="out of memory")
        except Exception as e:  # a bug: recorded, flagged, the sweep goes on
            row.update(status="failed", reason=f"internal error: {type(e).__name__}: {e}", internal=True)
    row["duration_s"] = time.perf_counter() - t0
    row["finished_at"] = time.time()
    return json_safe(row)


#: FP32 references on ONNX Runtime CPU, per worker process: (model hash, shapes) -> engine
_REFERENCES: dict[tuple, Any] = {}


def _reference(model, cell: Cell):
    from .backends.base import BuildOptions
    from .builds import build_variants

    k = (cell.model_hash, cell.shapes)
    if k not in _REFERENCES:
        if len(_REFERENCES) > 8:
            _REFERENCES.clear()
        _REFERENCES[k] = build_variants(model, ["fp32"], "onnxruntime", shapes=cell.shapes or None,
                                        options=BuildOptions(progress=False), progress=False).results[0]
    return _REFERENCES[k]


def _run_cell(cell: Cell, model_bytes: bytes, data_bytes, calib_bytes, labels_key, config: SweepConfig,
              tmp: Path) -> dict:
    from .backends.base import BuildOptions
    from .builds import build_variants
    from .compare.outputs import compare_engines, resolve_data
    from .measure.latency import measure_latency
    from .model import load

    model = load(model_bytes, name=cell.model)
    data = calib = None
    if data_bytes is not None:
        data = tmp / "data.npz"
        data.write_bytes(data_bytes)
    if calib_bytes is not None:
        calib = tmp / "calib.npz"
        calib.write_bytes(calib_bytes)
    shapes = cell.shapes or None
    opts = BuildOptions(progress=False, threads=config.threads)
    bs = build_variants(model, [cell.precision], cell.backend, shapes=shapes, calib=calib or data,
                        options=opts, progress=False)
    r = bs.results[0]
    out: dict[str, Any] = {"status": r.status if r.status != "cached" else "ok", "reason": r.reason or "",
                           "build_time_s": getattr(r.record, "build_time_s", None),
                           "cached": r.status == "cached", "build_record": r.record.to_json()}
    if r.engine is None:
        return out
    batches, labels = resolve_data(model, str(data) if data else None, labels_key, shapes=shapes,
                                   batch_size=cell.batch, limit=config.limit)
    lat = measure_latency(r.engine, batches[0], warmup=config.warmup, iterations=config.iterations)
    out.update({k: lat.stats.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput")},
               batch=lat.batch, latency=lat.to_json())
    ref = _reference(model, cell)
    if ref.engine is None:
        out["reason"] = (out["reason"] + "; " if out["reason"] else "") + f"no FP32 reference: {ref.reason}"
        return out
    cmp = compare_engines(ref.engine, [r.engine], batches, labels=labels, progress=False)
    m = cmp.metrics
    v = m[m["variant"] == cmp.variants[0]]

    def agg(metric, how):
        vals = v.loc[v["metric"] == metric, "value"].astype(float)
        return float(getattr(vals, how)()) if len(vals) else None

    out.update(cosine=agg("cosine", "min"), snr_db=agg("snr_db", "min"), max_abs=agg("max_abs", "max"),
               top1=agg("top1", "max"), top1_agreement=agg("top1_agreement", "max"),
               accuracy=m.to_dict(orient="records"), samples=cmp.samples)
    return out


# ------------------------------------------------------------------------------------------ executors
def _local(tasks, on_done, progress):
    from tqdm.auto import tqdm

    for cell, key, args in tqdm(tasks, desc="sweep", unit="cell", disable=not progress):
        on_done(cell, key, run_cell(cell, *args, key))


def _ray_init(executor: str):
    try:
        import ray
    except ImportError as e:
        raise UsageError("Ray is not installed: pip install 'trt-workbench[cluster]'") from e
    if ray.is_initialized():
        return ray, False
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("WB_")}}
    if executor in ("local", "local-ray"):
        ray.init(include_dashboard=False, runtime_env=env, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
    else:
        ray.init(address=executor, runtime_env=env, log_to_driver=False)
    return ray, True


def _cpus_per_cell(ray, requested: int | None) -> int:
    if requested:
        return int(requested)
    per_node = [int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n.get("Alive")]
    return max(1, min(per_node or [1]))


def _ray(tasks, on_done, progress, executor, cpus_per_cell, max_retries):
    ray, started = _ray_init(executor)
    try:
        from .backends import get_backend

        remote = ray.remote(run_cell)
        cpus = _cpus_per_cell(ray, cpus_per_cell)
        blobs: dict[int, Any] = {}

        def ref(b):  # each distinct blob goes into the object store once
            if b is None:
                return None
            k = id(b)
            if k not in blobs:
                blobs[k] = ray.put(b)
            return blobs[k]

        pending = {}
        for cell, key, (mb, db, cb, lk, cfg) in tasks:
            gpu = get_backend(cell.backend).device_kind == "cuda"
            opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": cpus}
            fut = remote.options(max_retries=max_retries, **opts).remote(cell, ref(mb), ref(db), ref(cb), lk, cfg, key)
            pending[fut] = (cell, key)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc="sweep (ray)", unit="cell", disable=not progress)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=30)
            if not done:  # nothing finished for 30 s: is the cluster still there?
                if _cluster_alive(ray):
                    continue
                for fut, (cell, key) in list(pending.items()):  # the cluster went away: every cell left is lost
                    on_done(cell, key, {**asdict(cell), "batch_size": cell.batch, "key": key, "status": "lost",
                                        "reason": "the Ray cluster stopped answering (no alive node)"})
                    bar.update(1)
                pending.clear()
                break
            fut = done[0]
            cell, key = pending.pop(fut)
            try:
                row = ray.get(fut)
            except Exception as e:  # worker died after its retries, node lost, object lost
                row = {**asdict(cell), "batch_size": cell.batch, "key": key, "status": "lost",
                       "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            on_done(cell, key, row)
            bar.update(1)
        bar.close()
    finally:
        if started:
            ray.shutdown()


def _cluster_alive(ray) -> bool:
    """Does the cluster still have an alive node? (False also when the GCS itself no longer answers.)"""
    import concurrent.futures as cf

    ex = cf.ThreadPoolExecutor(1)
    try:
        return bool(ex.submit(lambda: any(n.get("Alive") for n in ray.nodes())).result(timeout=20))
    except Exception:  # a timeout or a connection error: the cluster is gone
        return False
    finally:
        ex.shutdown(wait=False)  # never wait for a call that hangs


# ------------------------------------------------------------------------------------------ result
@dataclass
class SweepResult:
    """Rows of a sweep (one per cell) plus where they live."""

    rows: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    reused: int = 0
    ran: int = 0
    wall_s: float = 0.0
    executor: str = "local"

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in self.rows], columns=COLUMNS)
        return _with_speedup(df)

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": "sweep", "executor": self.executor,
                "cells": len(self.rows), "reused": self.reused, "ran": self.ran, "wall_s": self.wall_s,
                "rows": self.to_frame().to_dict(orient="records")}

    def heatmap(self, metric: str = "speedup"):
        """Model × precision heatmap of ``metric`` (first backend/shape set of each model)."""
        import plotly.graph_objects as go

        df = self.to_frame()
        df = df[df["status"] == "ok"].copy()
        if df["batch_size"].nunique(dropna=True) > 1:
            df["model"] = df["model"] + " · batch " + df["batch_size"].astype("Int64").astype(str)
        piv = df.pivot_table(index="model", columns="precision", values=metric, aggfunc="first")
        from .precision import precision_names

        piv = piv[[p for p in precision_names() if p in piv.columns]]
        fig = go.Figure(go.Heatmap(z=piv.values, x=list(piv.columns), y=list(piv.index), colorscale="Viridis",
                                   text=[[("" if pd.isna(v) else f"{v:.2f}") for v in row] for row in piv.values],
                                   texttemplate="%{text}", colorbar={"title": metric}))
        unit = "× vs fp32 p50" if metric == "speedup" else metric
        fig.update_layout(title=f"{metric} by model and precision ({unit})", xaxis_title="precision",
                          yaxis_title="model", height=160 + 40 * len(piv.index))
        return fig

    def pareto(self):
        """Per model: p50 latency (ms) against cosine similarity to FP32; the points no other point beats on
        both are joined."""
        import plotly.graph_objects as go

        df = self.to_frame()
        df = df[(df["status"] == "ok") & df["p50_ms"].notna()]
        fig = go.Figure()
        for model, g in df.groupby("model"):
            g = g.sort_values("p50_ms")
            fig.add_trace(go.Scatter(x=g["p50_ms"], y=g["cosine"], mode="markers+text", name=model,
                                     text=g["precision"] + " · " + g["backend"], textposition="top center"))
            best, front = -np.inf, []
            for _, r in g.iterrows():
                c = -np.inf if pd.isna(r["cosine"]) else r["cosine"]
                if c > best:
                    best = c
                    front.append(r)
            if len(front) > 1:
                f = pd.DataFrame(front)
                fig.add_trace(go.Scatter(x=f["p50_ms"], y=f["cosine"], mode="lines", showlegend=False,
                                         line={"dash": "dot", "width": 1}, hoverinfo="skip"))
        fig.update_layout(title="Latency vs accuracy per model (Pareto front dotted)",
                          xaxis_title="p50 latency (ms)", yaxis_title="cosine similarity to FP32 (1 = identical)")
        return fig

    def to_html(self) -> str:
        """A self-contained page: heatmap, Pareto, the table (plotly inlined once)."""
        import plotly.io as pio

        df = self.to_frame()
        figs = [self.heatmap(), self.pareto()]
        parts = [pio.to_html(f, include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs)]
        table = df.drop(columns=["key", "model_hash"]).to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}",
                                                                 border=0)
        head = (f"<h1>Sweep: {df['model'].nunique()} models × {df['precision'].nunique()} precisions × "
                f"{df['backend'].nunique()} backends ({len(df)} cells)</h1><p>{self.ran} ran, {self.reused} reused "
                f"from earlier runs; executor {self.executor}; wall time {self.wall_s:.1f} s. Speedup = FP32 p50 / "
                f"variant p50 on the same model, backend and shapes; cosine/SNR against FP32 on ONNX Runtime CPU.</p>")
        return ("<!doctype html><html><head><meta charset='utf-8'><title>workbench sweep</title>"
                "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}"
                "td,th{padding:2px 6px;border-bottom:1px solid #ddd}</style></head><body>"
                + head + "".join(parts) + table + "</body></html>")

    def save(self, out_dir: str | os.PathLike | None = None) -> Path:
        out = Path(out_dir) if out_dir is not None else self.out_dir
        if out is None:
            raise UsageError("give out_dir to save a sweep")
        ensure_dir(out)
        atomic_write_json(out / "sweep.json", self.to_json())
        atomic_write_text(out / "sweep.csv", self.to_frame().to_csv(index=False))
        atomic_write_text(out / "sweep.html", self.to_html())
        return out


def _with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    keys = ["model_hash", "backend", "shapes", "batch_size"]
    base = {tuple(r[k] for k in keys): r["p50_ms"] for _, r in df.iterrows()
            if r["precision"] == "fp32" and r["status"] == "ok"}
    ref = [base.get(tuple(r[k] for k in keys), np.nan) for _, r in df.iterrows()]
    df["speedup"] = np.asarray(ref, dtype=float) / df["p50_ms"].astype(float)
    return df


# ------------------------------------------------------------------------------------------ public call
def sweep(models: Sequence[Any] | Any, precisions: str | Iterable[str] = "fp32,fp16,int8",
          backends: str | Iterable[str] = "onnxruntime", *, shapes: str | Sequence[str] | None = None,
          data: Any = None, calib: Any = None, labels: str | None = None, out_dir: str | os.PathLike | None = None,
          executor: str | None = None, iterations: int = 50, warmup: int = 5,
          batch_sizes: Sequence[int | None] | int | None = None, limit: int | None = 64, cpus_per_cell: int | None = None, max_retries: int = 2, threads: int = 0,
          progress: bool = True, on_cell: Callable[[dict], None] | None = None) -> SweepResult:
    """Run every model × backend × precision × shape-set cell; returns a :class:`SweepResult`.

    ``executor``: None / ``"serial"`` (this process, one cell at a time), ``"local-ray"`` (a Ray runtime
    started for this call), or a Ray address (``"auto"``, ``"ray://host:10001"``, ``"127.0.0.1:6379"``).
    ``shapes``: one ``--shapes`` spec or a list of them (each a grid point); ``batch_sizes``: samples per
    run on each model's dynamic batch axis (a grid axis too, e.g. ``[1, 32]``). ``data``/``calib``/``labels``:
    one ``.npz`` path (key) for every model, or a dict from model path (or file name) to its own (accuracy
    needs data; int8/fp8 need calib or data; without data the inputs are synthetic within the shape
    doctor's value ranges). ``out_dir``: where cells, the
    JSON/CSV tables and the HTML page go; with it, finished cells are reused on the next call.
    ``on_cell(row)`` is called as each cell finishes (the dashboard fills in from it)."""
    from .backends import backend_names
    from .precision import parse_precisions

    t0 = time.perf_counter()
    models = [models] if isinstance(models, (str, os.PathLike, bytes)) or not isinstance(models, Sequence) else list(models)
    if not models:
        raise UsageError("give at least one model to sweep")
    precs = parse_precisions(precisions)
    bes = [b.strip() for b in backends.split(",")] if isinstance(backends, str) else list(backends)
    unknown = [b for b in bes if b not in backend_names()]
    if unknown or not bes:
        raise UsageError(f"unknown backend(s) {unknown}; choose from {backend_names()}")
    shape_sets = [""] if not shapes else ([shapes] if isinstance(shapes, str) else [s or "" for s in shapes])
    for n, label in ((iterations, "iterations"), (warmup + 1, "warmup + 1")):
        if int(n) < 1:
            raise UsageError(f"{label} must be >= 1")
    batches = [None] if batch_sizes is None else ([batch_sizes] if isinstance(batch_sizes, int) else list(batch_sizes))
    if any(b is not None and int(b) < 1 for b in batches):
        raise UsageError(f"batch sizes must be >= 1, got {batches}")
    config = SweepConfig(labels=None, iterations=int(iterations), warmup=int(warmup), limit=limit, threads=threads)
    ctx = config.context()
    inputs: dict[int, tuple] = {}  # index of the model -> (data bytes, calib bytes, labels key, key context)
    for i, m in enumerate(models):
        db, dh = _file_bytes(_per_model(data, m), "data")
        cb, ch = _file_bytes(_per_model(calib, m), "calibration data")
        lk = _per_model(labels, m)
        inputs[i] = (db, cb, lk, {**ctx, "data": dh, "calib": ch, "labels": lk})
    out = Path(out_dir) if out_dir is not None else None
    cells_dir = None
    if out is not None:
        cells_dir = ensure_dir(out / "cells")  # writes below go through the fsutil output guard

    sources, unloadable = [], []
    for i, m in enumerate(models):
        try:
            name, blob = _model_source(m)
        except WorkbenchError as e:  # a model that cannot be read is a failed cell, not a failed sweep
            unloadable.append((m, e))
            continue
        sources.append((name, hashlib.sha256(blob).hexdigest()[:16], blob, i))
    names = [n for n, *_ in sources]
    for j, (n, h, b, i) in enumerate(sources):  # two models with one file name: tell them apart
        if names.count(n) > 1:
            sources[j] = (f"{n}-{h[:6]}", h, b, i)
    grid = [(Cell(n, h, be, p, shp, bt), b, i) for (n, h, b, i), be, p, shp, bt
            in itertools.product(sources, bes, precs, shape_sets, batches)]

    result = SweepResult(out_dir=out, executor=executor or "serial")
    for m, err in unloadable:
        name = Path(str(m)).stem if isinstance(m, (str, os.PathLike)) else "model"
        for be, p, shp, bt in itertools.product(bes, precs, shape_sets, batches):
            row = {**asdict(Cell(name, "", be, p, shp, bt)), "batch_size": bt, "status": "failed",
                   "reason": f"cannot load the model: {err}", "key": ""}
            result.rows.append(row)
            if on_cell:
                on_cell(row)
    tasks = []
    for cell, blob, i in grid:
        db, cb, lk, kctx = inputs[i]
        key = cell.key(kctx)
        cached = _read_cell(cells_dir, key)
        if cached is not None:
            result.rows.append(cached)
            result.reused += 1
            if on_cell:
                on_cell(cached)
            continue
        tasks.append((cell, key, (blob, db, cb, lk, config)))

    def on_done(cell, key, row):
        row.setdefault("key", key)
        result.rows.append(row)
        result.ran += 1
        if cells_dir is not None and row.get("status") in FINISHED:
            atomic_write_json(cells_dir / f"{key}.json", row)
        if on_cell:
            on_cell(row)

    if executor in (None, "serial"):
        _local(tasks, on_done, progress)
    elif tasks:
        _ray(tasks, on_done, progress, executor, cpus_per_cell, max_retries)
    order = {c.key(inputs[i][3]): j for j, (c, _, i) in enumerate(grid)}
    result.rows.sort(key=lambda r: order.get(r.get("key"), len(order)))
    result.wall_s = time.perf_counter() - t0
    if out is not None:
        result.save(out)
    return result


def _read_cell(cells_dir: Path | None, key: str) -> dict | None:
    if cells_dir is None:
        return None
    p = cells_dir / f"{key}.json"
    if not p.is_file():
        return None
    try:
        row = json.loads(p.read_text())
    except (OSError, ValueError):
        return None  # a damaged cell file is run again
    if row.get("status") not in FINISHED or row.get("key") != key:
        return None
    return row


def load_sweep(out_dir: str | os.PathLike) -> SweepResult:
    """The :class:`SweepResult` saved in ``out_dir/sweep.json``."""
    p = Path(out_dir) / "sweep.json"
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {p}: {e}") from None
    return SweepResult(rows=d.get("rows", []), out_dir=Path(out_dir), reused=d.get("reused", 0),
                       ran=d.get("ran", 0), wall_s=d.get("wall_s", 0.0), executor=d.get("executor", ""))
