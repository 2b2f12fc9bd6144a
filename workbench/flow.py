"""The full flow in one call: inspect → variants → builds → latency → per-layer → accuracy.

    from workbench.flow import run_flow
    fr = run_flow("sample_models/digits_cnn.onnx", "fp32,fp16,int8", data="sample_models/digits_test.npz",
                  labels="label", calib="sample_models/digits_calib.npz")
    fr.summary()                  # variant, backend, precision, status, p50_ms, speedup, top1, cosine, reason
    fr.save("out/run")            # flow.json + records/<variant>@<backend>.json (versioned JSON)
    FlowResult.load("out/run")    # the same frames back, without engines

Builds are stored once, as ``fr.build_entries`` (one :class:`BuildEntry` per variant and backend);
``fr.builds`` (frame), ``fr.build_records``, ``fr.variants`` and ``fr.buildsets`` (live) are views of it.

Every step is a public call of another module (``inspect``, ``builds.build_variants``,
``measure.latency.measure_latency``, ``measure.layers.profile_layers``, ``compare.compare_engines``,
``compare.layerwise``); this module only sequences them and keeps their tidy frames together. The
report (``workbench.report``) and the dashboard read the frames of a :class:`FlowResult`.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import pandas as pd

from .errors import BuildError, UsageError, WorkbenchError
from .logs import captures_native_log
from .fsutil import json_safe
from .builds import FRAME_COLUMNS as BUILD_COLUMNS
from .records import Record, frame_from_json, frame_to_json, host_info, now_iso

#: Stages of :func:`run_flow`, in order (``on_stage`` receives these names).
STAGES = ("build", "profile", "accuracy")
#: Columns of :meth:`FlowResult.summary`.
SUMMARY_COLUMNS = ["variant", "backend", "precision", "status", "p50_ms", "speedup", "top1", "cosine", "reason",
                   "speedup_lo", "speedup_hi", "speed"]
#: Columns of :attr:`FlowResult.builds` (``BuildSet.to_frame()`` + the variant's ONNX size).
BUILDS_COLUMNS = [*BUILD_COLUMNS, "onnx_bytes"]
FLOW_FILE = "flow.json"
RECORDS_DIR = "records"


# ------------------------------------------------------------------------------------------- records
@dataclass
class VariantResultRecord(Record):
    """One variant on one backend: its configuration (recipe, hashes), build record, latency statistics
    and accuracy summary. Written as ``records/<variant>@<backend>.json``."""

    kind: ClassVar[str] = "variant_result"
    variant: str = ""
    backend: str = ""
    precision: str = ""
    status: str = ""
    reason: str = ""
    config: dict = field(default_factory=dict)  # Variant.to_json(): recipe, hashes, backend flags
    build: dict = field(default_factory=dict)  # BuildRecord.to_json()
    latency: dict = field(default_factory=dict)  # LatencyResult stats
    accuracy: dict = field(default_factory=dict)  # the variant's row of Comparison.summary()
    created: str = field(default_factory=now_iso)


@dataclass
class BuildEntry:
    """One variant built (or skipped / failed) on one backend: the row of :attr:`FlowResult.builds`, its
    :class:`~workbench.records.BuildRecord` (``record``) and the variant's configuration (``config``:
    ``Variant.to_json()``, empty when no variant was made). ``result`` is the live
    :class:`~workbench.builds.BuildResult` (engine, variant) in the producing process; it is not saved."""

    variant: str
    backend: str
    precision: str
    status: str
    reason: str = ""
    build_time_s: float | None = None
    engine_bytes: int | None = None
    cache_hit: bool = False
    recipe_time_s: float = 0.0  # seconds the recipe took (0: a ready variant or one from the variant cache)
    variant_cached: bool = False  # the variant came from the variant cache
    onnx_bytes: int | None = None
    record: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    result: Any = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """``variant@backend`` (the key of ``build_records`` / ``variants`` and of the per-variant files)."""
        return f"{self.variant}@{self.backend}"

    def row(self) -> dict:
        return {c: getattr(self, c) for c in BUILDS_COLUMNS}

    def to_json(self) -> dict:
        return json_safe({**self.row(), "record": self.record, "config": self.config})

    @classmethod
    def from_json(cls, d: dict) -> "BuildEntry":
        names = set(BUILDS_COLUMNS) | {"record", "config"}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_result(cls, r, backend: str) -> "BuildEntry":
        """From a :class:`~workbench.builds.BuildResult` of ``build_variants`` on ``backend``."""
        return cls(variant=r.name, backend=backend, precision=r.precision, status=r.status, reason=r.reason or "",
                   build_time_s=r.record.build_time_s if r.ok else None,
                   engine_bytes=r.record.engine_bytes if r.ok else None, cache_hit=bool(r.record.cache_hit),
                   recipe_time_s=round(float(getattr(r, "recipe_time_s", 0.0)), 3),
                   variant_cached=bool(getattr(r, "variant_cached", False)),
                   onnx_bytes=len(r.variant.model.to_bytes()) if r.variant is not None else None,
                   record=r.record.to_json(), config=r.variant.to_json() if r.variant is not None else {},
                   result=r)


@dataclass
class FlowRecord(Record):
    """Everything a report needs, as JSON: the run's configuration, the inspection, the builds (one
    :class:`BuildEntry` JSON each) and every other tidy frame (``{"columns": [...], "rows": [...]}``).
    Written as ``flow.json``; read back by :meth:`FlowResult.load`.

    Version 2 (this one) stores each build once, in ``builds``. Version 1 (before 2026-11-29) kept a
    ``builds`` frame plus ``variants: {"variants": {key: config}, "builds": {key: record}}`` and named the
    layerwise node column ``node``; :meth:`migrate` rewrites it."""

    kind: ClassVar[str] = "flow"
    version: ClassVar[int] = 2
    model: str = ""
    model_hash: str = ""
    config: dict = field(default_factory=dict)
    inspection: dict = field(default_factory=dict)
    builds: list = field(default_factory=list)
    frames: dict = field(default_factory=dict)
    node_order: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    host: dict = field(default_factory=host_info)

    @classmethod
    def migrate(cls, d: dict, from_version: int) -> dict:
        if from_version < 2:
            frames = dict(d.get("frames") or {})
            old = frames.pop("builds", None) or {}
            cols = old.get("columns") or []
            side = d.pop("variants", None) or {}
            configs, records = side.get("variants") or {}, side.get("builds") or {}
            builds = []
            for values in old.get("rows") or []:
                row = dict(zip(cols, values))
                key = f"{row.get('variant')}@{row.get('backend')}"
                builds.append({**{c: row.get(c) for c in BUILDS_COLUMNS}, "reason": row.get("reason") or "",
                               "cache_hit": bool(row.get("cache_hit")), "record": records.get(key, {}),
                               "config": configs.get(key, {})})
            lw = frames.get("layerwise")
            if lw and "node" in (lw.get("columns") or []):  # one node-column name: onnx_node
                lw = dict(lw, columns=["onnx_node" if c == "node" else c for c in lw["columns"]],
                          dtypes={("onnx_node" if k == "node" else k): t for k, t in (lw.get("dtypes") or {}).items()})
                frames["layerwise"] = lw
            d.update(frames=frames, builds=builds, schema_version=2)
        return d


# -------------------------------------------------------------------------------------------- result
@dataclass
class FlowResult:
    """Results of :func:`run_flow`: tidy frames (always) and live objects (only in the producing process).

    Builds: ``build_entries``, one :class:`BuildEntry` per variant and backend, the only store; the views
    ``builds`` (frame: BuildSet.to_frame() + ``onnx_bytes``), ``build_records`` and ``variants``
    (``variant@backend`` → BuildRecord / Variant JSON) and ``buildsets`` (backend → live BuildSet) are
    derived from it. Frames: ``latency`` (measure_latency rows), ``layers`` (profile_layers rows),
    ``accuracy`` (Comparison.summary() rows + ``backend``), ``metrics`` (Comparison.metrics), ``layerwise``
    (compare.layerwise rows), ``layerwise_unmatched`` (the tensors layerwise could not compare:
    ``compare.layerwise.unmatched_frame``).
    """

    model_name: str
    model_hash: str
    config: dict
    inspection: dict
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    layerwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    layerwise_unmatched: pd.DataFrame = field(default_factory=pd.DataFrame)
    build_entries: list = field(default_factory=list)  # [BuildEntry], in build order
    node_order: list = field(default_factory=list)  # the source model's node names, topological order
    errors: list = field(default_factory=list)  # [{"stage", "variant", "backend", "error"}]
    timings: dict = field(default_factory=dict)  # stage -> seconds
    created: str = field(default_factory=now_iso)
    # live objects, not saved
    model: Any = field(default=None, repr=False)
    comparisons: dict = field(default_factory=dict, repr=False)  # backend -> Comparison
    batches: list | None = field(default=None, repr=False)  # feed dicts (accuracy data; [0] is timed)
    labels: Any = field(default=None, repr=False)  # integer labels, one per sample, or None
    shapes: Any = field(default=None, repr=False)  # the shapes argument of build_stage

    FRAMES: ClassVar[tuple[str, ...]] = ("builds", "latency", "layers", "accuracy", "metrics", "layerwise",
                                         "layerwise_unmatched")
    #: the frames saved as frames (``builds`` is saved as its entries)
    STORED_FRAMES: ClassVar[tuple[str, ...]] = FRAMES[1:]

    @classmethod
    def empty(cls, model_name: str = "", model_hash: str = "", config: dict | None = None) -> "FlowResult":
        return cls(model_name, model_hash, dict(config or {}), {})

    # ------------------------------------------------------------------ builds (views of build_entries)
    @property
    def builds(self) -> pd.DataFrame:
        """One row per variant and backend: :data:`BUILDS_COLUMNS`."""
        return pd.DataFrame([e.row() for e in self.build_entries], columns=BUILDS_COLUMNS)

    @property
    def build_records(self) -> dict[str, dict]:
        """``variant@backend`` → ``BuildRecord.to_json()``."""
        return {e.key: e.record for e in self.build_entries}

    @property
    def variants(self) -> dict[str, dict]:
        """``variant@backend`` → ``Variant.to_json()`` (recipe, hashes, backend flags) of every made variant."""
        return {e.key: e.config for e in self.build_entries if e.config}

    @property
    def buildsets(self) -> dict:
        """backend → :class:`~workbench.builds.BuildSet` of the live results (empty for a loaded flow)."""
        from .builds import BuildSet

        out: dict = {}
        for e in self.build_entries:
            if e.result is not None:
                out.setdefault(e.backend, []).append(e.result)
        return {be: BuildSet(self.model, be, results) for be, results in out.items()}

    # ------------------------------------------------------------------ tables
    def summary(self) -> pd.DataFrame:
        """One row per variant and backend: ``variant, backend, precision, status, p50_ms, speedup``
        (the backend's fp32 p50 / this p50), ``top1``, ``cosine`` (minimum over outputs against the FP32
        ONNX Runtime reference), ``reason``, ``speedup_lo`` / ``speedup_hi`` (range of the per-block
        speedups) and ``speed`` ("faster" / "slower" / "within noise" / "reference":
        ``measure.repeat.speed_verdicts``)."""
        from .measure.repeat import speed_verdicts

        rows = []
        lat = self.latency
        acc = self.accuracy
        verdicts = speed_verdicts(lat)
        for b in self.builds.to_dict("records"):
            key = (b["variant"], b["backend"])
            row = {"variant": b["variant"], "backend": b["backend"], "precision": b["precision"],
                   "status": b["status"], "p50_ms": None, "speedup": None, "top1": None, "cosine": None,
                   "reason": b.get("reason") or ""}
            row.update(speedup_lo=None, speedup_hi=None, speed="")
            if not lat.empty:
                sel = lat[(lat.variant == key[0]) & (lat.backend == key[1])]
                if not sel.empty:
                    row["p50_ms"] = float(sel.p50_ms.iloc[0])
                    v = verdicts[(verdicts.variant == key[0]) & (verdicts.backend == key[1])]
                    if not v.empty and v.speedup.iloc[0] == v.speedup.iloc[0]:
                        row.update(speedup=float(v.speedup.iloc[0]), speedup_lo=float(v.speedup_lo.iloc[0]),
                                   speedup_hi=float(v.speedup_hi.iloc[0]), speed=str(v.verdict.iloc[0]))
            if not acc.empty:
                sel = acc[(acc.variant == key[0]) & (acc.backend == key[1])]
                if not sel.empty:
                    r = sel.iloc[0]
                    row["top1"] = _num(r.get("top1"))
                    row["cosine"] = _num(r.get("cosine_min"))
            errs = [e["error"] for e in self.errors if e.get("variant") == key[0] and e.get("backend") == key[1]]
            if errs:
                row["reason"] = "; ".join([row["reason"], *errs]).strip("; ")
            rows.append(row)
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)

    def summary_text(self) -> str:
        """The summary as a fixed-width table (what ``workbench demo`` prints)."""
        s = self.summary()
        head = (f"{'variant':<28} {'backend':<13} {'p50 ms':>9} {'speedup':>8} {'top-1':>7} {'cosine':>9} "
                f"{'block range':>11}  {'speed':<12}  status")
        lines = [head, "-" * len(head)]
        for r in s.to_dict("records"):
            f = lambda v, fmt, unit="": "-" if v is None or v != v else format(v, fmt) + unit  # noqa: E731
            reason = r["reason"] if len(r["reason"]) <= 120 else r["reason"][:117] + "..."
            status = r["status"] + (f" ({reason})" if reason else "")
            top1 = f(None if r["top1"] is None else 100 * r["top1"], ".2f", "%")
            rng = "-" if r["speedup_lo"] is None or r["speedup_lo"] != r["speedup_lo"] else \
                f"{r['speedup_lo']:.2f}-{r['speedup_hi']:.2f}"
            lines.append(f"{r['variant']:<28} {r['backend']:<13} {f(r['p50_ms'], '.4f'):>9} "
                         f"{f(r['speedup'], '.2f', 'x'):>8} {top1:>7} {f(r['cosine'], '.6f'):>9} "
                         f"{rng:>11}  {r['speed'] or '-':<12}  {status}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON
    def to_record(self) -> FlowRecord:
        from . import __version__

        versions = {"workbench": __version__}
        for b in self.build_records.values():
            versions.update({k: str(v) for k, v in (b.get("versions") or {}).items()})
        return FlowRecord(model=self.model_name, model_hash=self.model_hash, config=self.config,
                          inspection=self.inspection, builds=[e.to_json() for e in self.build_entries],
                          frames={k: frame_to_json(getattr(self, k)) for k in self.STORED_FRAMES},
                          node_order=list(self.node_order),
                          errors=list(self.errors), timings=dict(self.timings), versions=versions,
                          created=self.created)

    def variant_records(self) -> list[VariantResultRecord]:
        """One :class:`VariantResultRecord` per built (or skipped / failed) variant and backend."""
        out = []
        for e in self.build_entries:
            b = e.row()
            lat = self.latency
            stats = {}
            if not lat.empty:
                sel = lat[(lat.variant == b["variant"]) & (lat.backend == b["backend"])]
                if not sel.empty:
                    stats = json_safe(sel.iloc[0].to_dict())
            acc = {}
            if not self.accuracy.empty:
                sel = self.accuracy[(self.accuracy.variant == b["variant"]) & (self.accuracy.backend == b["backend"])]
                if not sel.empty:
                    acc = json_safe(sel.iloc[0].to_dict())
            out.append(VariantResultRecord(variant=b["variant"], backend=b["backend"], precision=b["precision"],
                                           status=b["status"], reason=b.get("reason") or "",
                                           config=e.config, build=e.record,
                                           latency=stats, accuracy=acc))
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``flow.json`` and ``records/<variant>@<backend>.json`` (atomic); returns the folder."""
        from .fsutil import ensure_dir

        d = ensure_dir(directory)
        for rec in self.variant_records():
            rec.save(d / RECORDS_DIR / f"{_safe(rec.variant)}@{_safe(rec.backend)}.json")
        self.to_record().save(d / FLOW_FILE)
        return d

    @classmethod
    def from_record(cls, rec: FlowRecord) -> "FlowResult":
        frames = {k: frame_from_json(rec.frames.get(k)) for k in cls.STORED_FRAMES}
        return cls(model_name=rec.model, model_hash=rec.model_hash, config=rec.config, inspection=rec.inspection,
                   build_entries=[BuildEntry.from_json(b) for b in rec.builds], node_order=list(rec.node_order),
                   errors=list(rec.errors), timings=dict(rec.timings), created=rec.created, **frames)

    @classmethod
    def load(cls, directory_or_file: str | os.PathLike) -> "FlowResult":
        """Read a saved flow (the folder or its ``flow.json``); engines and models are not restored."""
        p = Path(directory_or_file)
        if p.is_dir():
            p = p / FLOW_FILE
        if not p.exists():
            raise UsageError(f"no saved flow at {p}", hint="run workbench report or FlowResult.save first")
        return cls.from_record(FlowRecord.load(p))

    def __repr__(self) -> str:
        return (f"<FlowResult {self.model_name}: {len(self.build_entries)} build(s), {len(self.latency)} latency row(s), "
                f"{len(self.errors)} error(s)>")


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def _head(batches: list, samples: int) -> list:
    """The first ``samples`` samples of ``batches`` (the last batch sliced, as a view, when every array
    of it shares its first axis; at least one batch)."""
    out, n = [], 0
    for b in batches:
        first = next(iter(b.values()))
        size = int(first.shape[0]) if getattr(first, "ndim", 0) else 1
        want = samples - n
        if out and want <= 0:
            break
        if 0 < want < size and all(getattr(v, "ndim", 0) and v.shape[0] == size for v in b.values()):
            b = {k: v[:want] for k, v in b.items()}
            size = want
        out.append(b)
        n += size
        if n >= samples:
            break
    return out


#: Compared tensors (both graphs, all samples) per variant in the per-node error, at most: one 384x512 page of
#: a 672-node detector is 0.5-0.6 GB (two runs with every tensor exposed, then every element folded: ~2 CPU s
#: per page), a digits sample 60 KB. Over it, fewer samples are compared and the flow says why.
LAYERWISE_BUDGET = "1GB"

#: Samples per session run of the accuracy stage: a 32-sample run of a 384x512 detector held 4 GB of
#: activations; runs of 8 keep about a quarter of that and run as fast per sample.
ACCURACY_RUN_SAMPLES = 8


def _runs(batches: list, size: int, model) -> list:
    """``batches`` cut into runs of at most ``size`` samples (views) when the model's batch axis is dynamic
    and every array of a batch shares its first axis; otherwise as they are."""
    from .data import static_batch

    from .data import Batches

    if static_batch(model) is not None or getattr(batches, "size", size + 1) <= size:
        return batches  # fixed batch, or data.Batches already read in runs this small (one at a time)
    if isinstance(batches, Batches) and batches.starts and batches.starts[0] == 0:
        return batches.dataset.batch_list(size, limit=batches.num_samples)  # still read one run at a time
    out = []
    for b in batches:
        n = _n(b)
        if n <= size or not all(getattr(v, "ndim", 0) and v.shape[0] == n for v in b.values()):
            out.append(b)
            continue
        out += [{k: v[i:i + size] for k, v in b.items()} for i in range(0, n, size)]
    return out


def _n(feeds) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if getattr(first, "ndim", 0) else 1


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


# ---------------------------------------------------------------------------------------------- flow
def _backends(backend: str | Sequence[str]) -> list[str]:
    items = [b.strip() for b in backend.split(",")] if isinstance(backend, str) else [str(b) for b in backend]
    items = [b for b in items if b]
    if not items:
        raise UsageError("give at least one backend")
    return list(dict.fromkeys(items))


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise BuildError("cancelled", hint="results of the finished steps are kept")


def _note(fr: FlowResult, stage: str, variant: str, backend: str, e: Exception) -> None:
    fr.errors.append({"stage": stage, "variant": variant, "backend": backend, "error": str(e)})


def _built(fr: FlowResult) -> list:
    return [(e.backend, e.result) for e in fr.build_entries if e.result is not None and e.result.engine is not None]


def _describe(v) -> str | None:
    if v is None:
        return None
    return str(v) if isinstance(v, (str, os.PathLike)) else "in-memory"


@captures_native_log
def build_stage(model, precisions: str | Iterable[str] = "fp32,fp16,int8",
                backend: str | Sequence[str] = "onnxruntime", *, data=None, labels=None, calib=None, shapes=None,
                accuracy_limit: int | None = None, out_dir: str | os.PathLike | None = None, cache=None,
                variant_cache=None, progress: bool = True, cancel: threading.Event | None = None) -> FlowResult:
    """Step 1: inspect ``model``, read ``data`` (and ``labels``), build every precision on every backend
    (``builds.build_variants``; ``cache``: engine cache, ``variant_cache``: recipe outputs reused across
    runs). Returns a new :class:`FlowResult` holding the engines; ``config["reused"]["build"]`` says
    what came from the caches."""
    from .inspect import inspect as _inspect
    from .builds import build_variants
    from .precision import parse_precisions
    from .data import resolve_data
    from .data import synthetic_inputs
    from .model import Model, load

    m = model if isinstance(model, Model) else load(model)
    m.require_inputs("the flow (latency and accuracy)")
    backends = _backends(backend)
    precs = parse_precisions(precisions)
    config = {"model": m.name, "precisions": precs, "backends": backends, "data": _describe(data),
              "labels": labels if isinstance(labels, str) else (None if labels is None else "array"),
              "calib": _describe(calib), "shapes": str(shapes) if shapes is not None else None,
              "accuracy_limit": accuracy_limit}
    fr = FlowResult.empty(m.name, m.hash, config)
    fr.model, fr.shapes = m, shapes
    t0, c0 = time.perf_counter(), time.process_time()
    fr.inspection = _inspect(m, shapes=shapes).to_json()
    fr.node_order = [n.name for n in m.graph.node]
    fr.timings["inspect"] = round(time.perf_counter() - t0, 3)
    _cpu(fr, "inspect", c0)
    if data is not None:
        fr.batches, fr.labels = resolve_data(m, data, labels, shapes=shapes, limit=accuracy_limit)
    else:
        fr.batches, fr.labels = [synthetic_inputs(m, shapes)], None
    n = getattr(fr.batches, "num_samples", None)  # data.Batches: counted without reading the data
    fr.config["accuracy_samples"] = n if n is not None else sum(_n(b) for b in fr.batches)
    if calib is None and data is not None:
        calib = fr.batches
    if isinstance(variant_cache, (str, os.PathLike)):
        from .variantcache import VariantCache

        variant_cache = VariantCache(Path(variant_cache).expanduser())  # one object: its last_reason is read
    t0, c0 = time.perf_counter(), time.process_time()
    for be in backends:
        _check_cancel(cancel)
        bs = build_variants(m, precs, be, shapes=shapes, calib=calib, progress=progress, cache=cache,
                            out_dir=Path(out_dir) / be if out_dir is not None else None,
                            variant_cache=variant_cache)
        fr.build_entries.extend(BuildEntry.from_result(r, bs.backend) for r in bs.results)
    fr.timings["build"] = round(time.perf_counter() - t0, 3)
    _cpu(fr, "build", c0)
    fr.config.setdefault("reused", {})["build"] = _build_reuse(fr, variant_cache)
    return fr


def _cpu(fr: FlowResult, stage: str, c0: float) -> None:
    """CPU seconds of ``stage`` (this process, all threads): the honest number on a shared machine."""
    fr.config.setdefault("stage_cpu_s", {})[stage] = round(time.process_time() - c0, 3)


def _build_reuse(fr: FlowResult, variant_cache=None) -> str:
    """What the build stage took from the caches, in words (the report's stage table)."""
    made, reused, engines = [], [], []
    for e in fr.build_entries:
        r = e.result
        if r is None or r.variant is None:
            continue
        if e.cache_hit:
            engines.append(e.key)
        if r.variant.recipe.get("tool") == "none":
            continue
        (reused if getattr(r, "variant_cached", False) else made).append(r.precision)
    parts = []
    if reused:
        parts.append(f"variants reused: {', '.join(dict.fromkeys(reused))}")
    if made:
        why = variant_cache.last_reason if variant_cache is not None and not reused else ""
        parts.append(f"variants made: {', '.join(dict.fromkeys(made))}" + (f" ({why})" if why else ""))
        if variant_cache is None:
            parts.append("no variant cache")
    if engines:
        parts.append(f"engines reused: {', '.join(engines)}")
    return "; ".join(parts) or "nothing to make (fp32/tf32 only)"


@captures_native_log
def profile_stage(fr: FlowResult, *, iterations: int = 100, warmup: int = 10, layer_iterations: int = 20,
                  layers: bool = True, blocks: int = 5, time_budget_s: float | None = None,
                  latency_samples: int | None = None, progress: bool = True,
                  cancel: threading.Event | None = None) -> FlowResult:
    """Step 2: end-to-end latency and per-layer times (``profile_layers``) of every built engine on the
    first data batch. Latency: ``iterations`` timed runs per variant in ``blocks`` interleaved blocks
    (``measure.repeat.measure_blocks``: p50 over all runs, the range of the block medians, speedup
    verdicts per block). Fills ``fr.latency`` / ``fr.layers``; returns ``fr``.

    ``time_budget_s`` (the report's sample budget): one untimed run per variant measures its cost, then
    each variant gets as many timed runs as fit in the budget (at least one; no further warm-up) and
    only as many profiled runs as fit at its p50. ``latency_samples``: time runs of the first this many
    samples of the first batch (None: the whole first batch)."""
    from .data import cast_feeds
    from .measure.layers import profile_layers
    from .measure.repeat import blocks_frame, measure_blocks

    _needs_engines(fr)
    fr.config.update(iterations=iterations, warmup=warmup, layer_iterations=layer_iterations, blocks=blocks,
                     time_budget_s=time_budget_s, latency_samples=latency_samples)
    fr.errors[:] = [e for e in fr.errors if e["stage"] not in ("latency", "layers")]
    feeds = fr.batches[0] if latency_samples is None else _head(fr.batches[:1], latency_samples)[0]
    fr.config["latency_batch"] = _n(feeds)
    t0, c0 = time.perf_counter(), time.process_time()
    # every variant in `blocks` interleaved blocks (A B C A B C ...): speedups are per block, under the
    # same load, and their range says whether a difference is real (measure/repeat.py)
    _check_cancel(cancel)
    built = _built(fr)
    runs = [(r.engine, cast_feeds(feeds, r.variant.model)) for _, r in built]
    its, wu, nb = iterations, warmup, blocks
    if time_budget_s is not None and runs:
        cost = 0.0
        for eng, f in runs:  # one untimed run each: the warm-up, and what a run costs
            t1 = time.perf_counter()
            try:
                eng.run(f)
            except Exception:  # noqa: BLE001 - measure_blocks reports the failure with its context
                continue
            cost = max(cost, time.perf_counter() - t1)
        its = max(1, min(iterations, int(time_budget_s / cost))) if cost > 0 else iterations
        wu, nb = 0, max(1, min(blocks, its))
        fr.config["latency_runs"] = its
    timed = measure_blocks(runs, blocks=nb, iterations=its, warmup=wu, progress=progress)
    for (be, r), (res, err) in zip(built, timed):
        if res is None:
            _note(fr, "latency", r.name, be, err)
    fr.latency = blocks_frame(timed)
    fr.timings["latency"] = round(time.perf_counter() - t0, 3)
    _cpu(fr, "latency", c0)
    if layers:
        t0, c0 = time.perf_counter(), time.process_time()
        frames = []
        for be, r in _built(fr):
            _check_cancel(cancel)
            its = layer_iterations
            if time_budget_s is not None and not fr.latency.empty:
                sel = fr.latency[(fr.latency.variant == r.variant.name) & (fr.latency.backend == be)]
                p50 = float(sel.p50_ms.iloc[0]) if not sel.empty else 0.0
                if p50 > 0:
                    its = max(1, min(layer_iterations, int(time_budget_s * 1000.0 / p50)))
            try:
                frames.append(profile_layers(r.engine, cast_feeds(feeds, r.variant.model), iterations=its,
                                             warmup=min(3, its), progress=progress))
            except WorkbenchError as e:
                _note(fr, "layers", r.name, be, e)
        fr.layers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        fr.timings["layers"] = round(time.perf_counter() - t0, 3)
        _cpu(fr, "layers", c0)
    return fr


@captures_native_log
def accuracy_stage(fr: FlowResult, *, layerwise: bool = True, layerwise_limit: int = 16, atol: float = 1e-3,
                   rtol: float = 1e-3, layerwise_budget: int | str | None = LAYERWISE_BUDGET, progress: bool = True,
                   cancel: threading.Event | None = None) -> FlowResult:
    """Step 3: every built engine against the FP32 ONNX Runtime CPU reference over the data
    (``compare.compare_engines``), then the per-node error of each reduced-precision variant
    (``compare.layerwise`` on ``layerwise_limit`` samples, fewer when their compared tensors exceed
    ``layerwise_budget`` bytes: ``config["layerwise_reason"]``). Fills ``fr.accuracy`` / ``fr.metrics`` /
    ``fr.layerwise``; returns ``fr``. ``atol`` / ``rtol``: the element-wise tolerance of ``passed``
    (kept in ``fr.config`` so reports state it)."""
    from .compare import compare_engines
    from .compare import layerwise as _layerwise
    from .compare.layerwise import unmatched_frame
    from .builds import build_engine
    from .precision import keeps_graph

    _needs_engines(fr)
    fr.config.update(layerwise_limit=layerwise_limit, atol=atol, rtol=rtol, layerwise_budget=layerwise_budget)
    fr.errors[:] = [e for e in fr.errors if e["stage"] not in ("accuracy", "layerwise")]
    built = _built(fr)
    t0, c0 = time.perf_counter(), time.process_time()
    acc, metrics = [], []
    if built:
        _check_cancel(cancel)
        ref = next((r.engine for b, r in built if b == "onnxruntime" and r.variant.precision == "fp32"
                    and r.variant.model.hash == fr.model.hash), None)  # built already: do not build it again
        reused = fr.config.setdefault("reused", {})
        reused["accuracy"] = ("reference: the fp32 onnxruntime engine of the build stage, whose own outputs serve "
                              "as its compared ones (no second run)" if ref is not None else "")
        if ref is None:
            _, ref = build_engine(fr.model, "fp32", "onnxruntime", shapes=fr.shapes, progress=progress)
        for be in fr.buildsets:
            engines = [r.engine for b, r in built if b == be]
            if not engines:
                continue
            _check_cancel(cancel)
            try:
                cmp = compare_engines(ref, engines, _runs(fr.batches, ACCURACY_RUN_SAMPLES, fr.model),
                                      labels=fr.labels, atol=atol, rtol=rtol,
                                      progress=progress)
            except WorkbenchError as e:
                _note(fr, "accuracy", "", be, e)
                continue
            fr.comparisons[be] = cmp
            s = cmp.summary()
            s = s[s.variant != cmp.reference].copy()
            s["backend"] = be
            acc.append(s)
            metrics.append(cmp.metrics)
    fr.accuracy = pd.concat(acc, ignore_index=True) if acc else pd.DataFrame()
    fr.metrics = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame()
    fr.timings["accuracy"] = round(time.perf_counter() - t0, 3)
    _cpu(fr, "accuracy", c0)
    if layerwise:
        t0, c0 = time.perf_counter(), time.process_time()
        seen, frames, unmatched = set(), [], []
        batches = _head(fr.batches, layerwise_limit)
        fr.config["layerwise_samples"] = sum(_n(b) for b in batches)
        for _, r in built:
            if keeps_graph(r.variant.precision) or r.variant.hash in seen:
                continue
            seen.add(r.variant.hash)
            _check_cancel(cancel)
            try:
                frames.append(_layerwise(fr.model, r.variant, data=batches, limit=None, progress=progress,
                                         compare_budget=layerwise_budget))
                unmatched.append(unmatched_frame(frames[-1]))
            except WorkbenchError as e:
                _note(fr, "layerwise", r.name, "onnxruntime", e)
        used = [f.attrs.get("samples") for f in frames if f.attrs.get("samples")]
        if used:
            fr.config["layerwise_samples"] = max(used)
        reasons = [f"{f.attrs.get('variant')}: {f.attrs['samples_reason']}" for f in frames
                   if f.attrs.get("samples_reason")]
        fr.config["layerwise_reason"] = "; ".join(reasons)
        fr.layerwise = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        unmatched = [u for u in unmatched if len(u)]
        fr.layerwise_unmatched = pd.concat(unmatched, ignore_index=True) if unmatched else unmatched_frame(pd.DataFrame())
        fr.timings["layerwise"] = round(time.perf_counter() - t0, 3)
        _cpu(fr, "layerwise", c0)
    return fr


def _needs_engines(fr: FlowResult) -> None:
    if not fr.buildsets or fr.batches is None:
        raise UsageError("this FlowResult holds no engines (loaded from JSON?)", hint="run build_stage first")


@captures_native_log
def run_flow(model, precisions: str | Iterable[str] = "fp32,fp16,int8", backend: str | Sequence[str] = "onnxruntime",
             *, data=None, labels=None, calib=None, shapes=None, iterations: int = 100, warmup: int = 10,
             layer_iterations: int = 20, blocks: int = 5, time_budget_s: float | None = None,
             latency_samples: int | None = None, accuracy_limit: int | None = None, layerwise: bool = True,
             layerwise_limit: int = 16, layerwise_budget: int | str | None = LAYERWISE_BUDGET,
             out_dir: str | os.PathLike | None = None, cache=None, variant_cache=None, progress: bool = True, on_stage: Callable[[str, FlowResult], None] | None = None,
             cancel: threading.Event | None = None) -> FlowResult:
    """Run the whole flow on ``model``: :func:`build_stage` → :func:`profile_stage` → :func:`accuracy_stage`.

    Args:
        precisions: ``"fp32,fp16,int8"`` or a list; backend: one name, a comma list or a list of names.
        data: ``.npz`` path (or anything ``compare_outputs`` accepts) for latency feeds and accuracy;
            None: one synthetic batch, accuracy as output deltas only.
        labels: the ``.npz`` key of integer labels (top-1); calib: INT8/FP8 calibration data (defaults
            to ``data``'s batches).
        iterations / warmup: latency runs per variant; layer_iterations: profiled runs per variant;
            time_budget_s: seconds per variant for each of latency and per-layer profiling (fewer runs);
            latency_samples: samples per timed run (default: the whole first data batch).
        accuracy_limit: use at most this many samples for accuracy; layerwise_limit: samples (default
            16, the per-node sample budget: every tensor of both graphs is compared) for the per-node
            error of each reduced-precision variant; layerwise_budget: bytes of compared tensors per
            variant at most (default 1 GB; fewer samples when over; None: no limit).
        out_dir: also write each variant's ONNX (and engine) there (``build_variants``).
        cache / variant_cache: engine cache and variant cache (folders or cache objects): a second run on
            the same model, data and precisions reuses recipe outputs and serialized engines.
        on_stage: called as ``on_stage(stage, result_so_far)`` after "build", "profile" and "accuracy".
        cancel: an Event; when set, the flow stops before its next step with ``BuildError("cancelled")``.

    A stage that fails for one variant (a ``WorkbenchError``) is recorded in ``errors`` and the flow
    continues; precisions a backend cannot build are ``skipped`` with the reason.
    """
    fr = build_stage(model, precisions, backend, data=data, labels=labels, calib=calib, shapes=shapes,
                     accuracy_limit=accuracy_limit, out_dir=out_dir, cache=cache, variant_cache=variant_cache,
                     progress=progress, cancel=cancel)
    if on_stage is not None:
        on_stage("build", fr)
    profile_stage(fr, iterations=iterations, warmup=warmup, layer_iterations=layer_iterations, blocks=blocks,
                  time_budget_s=time_budget_s, latency_samples=latency_samples, progress=progress, cancel=cancel)
    if on_stage is not None:
        on_stage("profile", fr)
    accuracy_stage(fr, layerwise=layerwise, layerwise_limit=layerwise_limit, layerwise_budget=layerwise_budget,
                   progress=progress, cancel=cancel)
    if on_stage is not None:
        on_stage("accuracy", fr)
    return fr
