"""The one build path: ``build_variants(model, ["fp32", "fp16"], ...)`` and, for one engine, ``build_engine``.

Every caller that needs an engine comes through here (``flow``, ``compare``, mixed-precision search,
``workbench profile``, ``run_model``), so the engine cache, the missing-kernel fallback and the build
records apply everywhere.

Per precision: ask the backend whether it can (``supports``) → make the variant
(``workbench.precision.make_variant``; a ready :class:`~workbench.variant.Variant` is used as given) →
build (through the engine cache when given) → record.
A skipped, failed recipe or failed build is recorded with its reason and never stops the others, nor
touches files written for earlier variants. With ``out_dir``, each variant's ``<variant>.onnx``, its
``<variant>.engine`` (backends with serialized engines) and ``build.json`` (atomic, rewritten after
every variant) are written there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .backends import get_backend
from .backends.base import Backend, BuildOptions, Engine
from .backends.cache import EngineCache
from .data import ShapeMap
from .errors import BackendUnavailable, BuildError, UnsupportedError, UsageError, WorkbenchError, str_list
from .fsutil import atomic_write_json, child_path, ensure_dir, guard_output, safe_name
from .logs import attach as attach_native_log, captures_native_log, native_log
from .model import Model, load
from .records import SCHEMA_VERSION, BuildRecord, now_iso
from .variant import Variant

FRAME_COLUMNS = ["variant", "precision", "backend", "status", "reason", "build_time_s", "engine_bytes", "cache_hit",
                 "recipe_time_s", "variant_cached"]


@dataclass
class BuildResult:
    """One precision's outcome. ``engine`` is None unless status is ok/cached."""

    precision: str
    status: str  # ok | cached | skipped | failed
    reason: str
    record: BuildRecord
    variant: Variant | None = None
    engine: Engine | None = None
    files: dict[str, str] = field(default_factory=dict)
    internal: bool = False  # failed because of a bug, not bad input
    error: BaseException | None = field(default=None, repr=False)  # the exception of a failed recipe/build
    recipe_time_s: float = 0.0  # seconds making the variant (0 when given ready or taken from the cache)
    variant_cached: bool = False  # the variant came from the variant cache (no recipe ran)

    def raise_for_status(self) -> "BuildResult":
        """Raise what made this result skipped (``UnsupportedError``) or failed (the original error)."""
        if self.status == "skipped":
            raise UnsupportedError(f"{self.precision} on {self.record.backend}: {self.reason}")
        if self.status == "failed":
            if self.error is not None:
                raise self.error
            raise BuildError(self.reason)
        return self

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")

    @property
    def name(self) -> str:
        return self.variant.name if self.variant is not None else self.record.variant

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.name, "precision": self.precision, "status": self.status, "reason": self.reason,
                "files": dict(self.files), "record": self.record.to_json()}


@dataclass
class BuildSet:
    """All results of one ``build_variants`` call, in the requested order."""

    model: Model
    backend: str
    results: list[BuildResult]
    out_dir: Path | None = None
    cache: EngineCache | None = None
    variant_cache: Any = None  # a workbench.variantcache.VariantCache
    created: str = field(default_factory=now_iso)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, precision: str) -> BuildResult:
        for r in self.results:
            if r.precision == precision:
                return r
        raise KeyError(precision)

    @property
    def engines(self) -> dict[str, Engine]:
        """{variant name: engine} for the built (or cached) variants."""
        return {r.name: r.engine for r in self.results if r.engine is not None}

    @property
    def variants(self) -> dict[str, Variant]:
        return {r.name: r.variant for r in self.results if r.variant is not None}

    def to_json(self) -> dict[str, Any]:
        out = {"schema_version": SCHEMA_VERSION, "kind": "build_set", "created": self.created,
               "model": self.model.name, "model_hash": self.model.hash, "backend": self.backend,
               "variants": [r.to_json() for r in self.results]}
        if self.cache is not None:
            out["cache"] = {"dir": str(self.cache.dir), **self.cache.stats()}
        if self.variant_cache is not None:
            out["variant_cache"] = {"dir": str(self.variant_cache.dir), **self.variant_cache.stats()}
        return out

    def to_frame(self):
        """Tidy table: variant, precision, backend, status, reason, build_time_s, engine_bytes, cache_hit (engine
        from the engine cache), recipe_time_s (making the variant), variant_cached (from the variant cache)."""
        import pandas as pd

        rows = [{"variant": r.name, "precision": r.precision, "backend": self.backend, "status": r.status,
                 "reason": r.reason, "build_time_s": r.record.build_time_s if r.ok else None,
                 "engine_bytes": r.record.engine_bytes if r.ok else None, "cache_hit": bool(r.record.cache_hit),
                 "recipe_time_s": round(r.recipe_time_s, 3), "variant_cached": bool(r.variant_cached)}
                for r in self.results]
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def __repr__(self) -> str:
        parts = ", ".join(f"{r.precision}:{r.status}" for r in self.results)
        return f"<BuildSet {self.model.name} on {self.backend}: {parts}>"


def _make_variant(model: Model, precision: str, *, calib, keep_nodes, keep_op_types, progress,
                  recipe_options: Mapping | None = None, backend: str | None = None,
                  variant_cache=None, facts: dict | None = None) -> Variant:
    """The recipe's variant, through ``variant_cache`` when given (``facts``: recipe_time_s, variant_cached)."""
    import time

    from .precision import get_recipe, make_variant

    opts = dict(recipe_options or {})
    if backend and get_recipe(precision).kind == "qdq":
        # int8/fp8: the Q/DQ form the backend runs fast (ORT CPU: uint8 activations; TensorRT: symmetric int8)
        opts.setdefault("backend", backend)
    key = None
    if get_recipe(precision).kind == "none":  # fp32/tf32 keep the graph: nothing worth caching
        variant_cache = None
    if variant_cache is not None:
        from .variantcache import variant_key

        key = variant_key(model, precision, calib=calib, keep_nodes=keep_nodes, keep_op_types=keep_op_types,
                          options=opts)
        found = variant_cache.get(key, model)
        if found is not None:
            if facts is not None:
                facts.update(recipe_time_s=0.0, variant_cached=True)
            return found
    t0 = time.perf_counter()
    variant = make_variant(model, precision, calib=calib, keep_nodes=keep_nodes, keep_op_types=keep_op_types,
                           progress=progress, **opts)
    if facts is not None:
        facts.update(recipe_time_s=time.perf_counter() - t0, variant_cached=False)
    if variant_cache is not None:
        variant_cache.put(key, variant)
    return variant


def _record(model: Model, precision: str, backend: Backend, status: str, reason: str,
            variant: Variant | None = None, options: BuildOptions | None = None, shapes=None) -> BuildRecord:
    return BuildRecord(variant=variant.name if variant else f"{model.name}-{precision}", precision=precision,
                       variant_hash=variant.hash if variant else "", source_hash=model.hash, backend=backend.name,
                       status=status, reason=reason, options=options.to_json() if options else {},
                       shapes=ShapeMap.parse(shapes).to_json() if shapes is not None else {})


@captures_native_log
def build_variants(model, precisions: str | Iterable[str | Variant], backend: str | Backend = "onnxruntime", *,
                   shapes: ShapeMap | str | Mapping | None = None, calib=None,
                   out_dir: str | os.PathLike | None = None, options: BuildOptions | None = None,
                   cache: EngineCache | str | os.PathLike | None = None, keep_nodes: Iterable[str] = (),
                   keep_op_types: Iterable[str] = (), progress: bool = True,
                   recipe_options: Mapping | None = None, variant_cache=None) -> BuildSet:
    """Build ``model`` at each precision on ``backend``; returns a :class:`BuildSet`.

    ``precisions``: ``"fp32,fp16"``, a list of names, or ready :class:`~workbench.variant.Variant` objects
    (built as given: no recipe, no kernel fallback). ``recipe_options``: keyword options for
    ``make_variant`` (e.g. ``{"num_calib": 64}``).

    Example::

        bs = build_variants("model.onnx", "fp32,fp16", backend="tensorrt-rtx", out_dir="builds",
                            cache="~/.cache/workbench-engines")
        bs.to_frame()

    ``cache`` (an :class:`EngineCache` or a folder) is used by backends with serialized engines
    (TensorRT, TensorRT-RTX); with TensorRT a timing cache file is kept in the same folder (or in
    ``out_dir``) unless ``options.timing_cache`` names one.

    ``variant_cache`` (a :class:`~workbench.variantcache.VariantCache` or a folder): recipe outputs are
    reused when the model, precision, recipe options, calibration data content and recipe code are the
    same (``variant_cached`` / ``recipe_time_s`` in the frame).
    """
    model = load(model)
    be = get_backend(backend)
    ok, why = be.available()
    if not ok:
        raise BackendUnavailable(why)
    from .precision import parse_precisions

    if isinstance(precisions, Variant):
        precisions = [precisions]
    if precisions is None or not isinstance(precisions, str) and not hasattr(precisions, "__iter__"):
        raise UsageError(f"precisions must be a comma-separated string or a list, got {precisions!r}")
    ready = {} if isinstance(precisions, str) else {v.precision: v for v in precisions if isinstance(v, Variant)}
    precs = parse_precisions(precisions if isinstance(precisions, str)
                             else [v.precision if isinstance(v, Variant) else v for v in precisions])
    keep_nodes, keep_op_types = str_list(keep_nodes, "keep_nodes"), str_list(keep_op_types, "keep_op_types")
    sm = ShapeMap.parse(shapes)
    options = options or BuildOptions(progress=progress)
    if not isinstance(options, BuildOptions):
        raise UsageError(f"options must be a BuildOptions, not {type(options).__name__}")
    if isinstance(cache, (str, os.PathLike)):
        cache = EngineCache(Path(cache).expanduser())
    elif cache is not None and not isinstance(cache, EngineCache):
        raise UsageError(f"cache must be a folder path or an EngineCache, not {type(cache).__name__}")
    if isinstance(variant_cache, (str, os.PathLike)):
        from .variantcache import VariantCache

        variant_cache = VariantCache(Path(variant_cache).expanduser())
    serialized = be.serializes_engines
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        ensure_dir(out)
        guard_output(out / "build.json", what="build.json")  # before any build: e.g. a model named build.json
    wants_timing_cache = be.uses_timing_cache
    if wants_timing_cache and options.timing_cache is None and (cache is not None or out is not None):
        from dataclasses import replace

        folder = cache.dir if cache is not None else out
        options = replace(options, timing_cache=str(folder / f"timing-{be.name}.cache"))
    bs = BuildSet(model=model, backend=be.name, results=[], out_dir=out, cache=cache if serialized else None,
                  variant_cache=variant_cache)
    for p in precs:
        with native_log() as nl:  # native lines of this build: in its record / on its error (workbench.logs)
            r = _one(model, p, be, sm, calib, options, cache if serialized else None, out,
                     tuple(keep_nodes), tuple(keep_op_types), progress, recipe_options, ready.get(p), variant_cache)
        if nl.lines:
            r.record.native_log = nl.lines
            if r.error is not None:
                attach_native_log(r.error, nl.lines, nl.count)
        bs.results.append(r)
        if out is not None:
            atomic_write_json(out / "build.json", bs.to_json())
    return bs


#: at most this many op types are moved to fp32 for a backend's missing kernels before giving up.
MAX_KERNEL_FALLBACKS = 8


def _one(model, precision, be, sm, calib, options, cache, out, keep_nodes, keep_op_types, progress,
         recipe_options=None, ready: Variant | None = None, variant_cache=None) -> BuildResult:
    facts: dict = {}
    result = _one_build(model, precision, be, sm, calib, options, cache, out, keep_nodes, keep_op_types, progress,
                        recipe_options, ready, variant_cache, facts)
    result.recipe_time_s = float(facts.get("recipe_time_s", 0.0))
    result.variant_cached = bool(facts.get("variant_cached", False))
    return result


def _one_build(model, precision, be, sm, calib, options, cache, out, keep_nodes, keep_op_types, progress,
               recipe_options, ready, variant_cache, facts: dict) -> BuildResult:
    ok, why = be.supports(precision)
    if not ok:
        return BuildResult(precision, "skipped", why, _record(model, precision, be, "skipped", why, options=options))
    try:
        variant = ready if ready is not None else _make_variant(
            model, precision, calib=calib, keep_nodes=keep_nodes, keep_op_types=keep_op_types, progress=progress,
            recipe_options=recipe_options, backend=be.name, variant_cache=variant_cache, facts=facts)
    except WorkbenchError as e:
        reason = f"recipe failed: {e}"
        return BuildResult(precision, "failed", reason, _record(model, precision, be, "failed", reason, options=options),
                           error=e)
    except Exception as e:  # a bug in a recipe: record it, keep building the others
        reason = f"recipe failed with an internal error: {type(e).__name__}: {e}"
        return BuildResult(precision, "failed", reason, _record(model, precision, be, "failed", reason, options=options),
                           internal=True, error=e)
    kept: list[str] = []  # op types kept in fp32 because the backend has no kernel for them
    while True:
        files: dict[str, str] = {}
        if out is not None:
            onnx_path = child_path(out, f"{safe_name(variant.name)}.onnx")
            variant.model.save(onnx_path)
            files["onnx"] = onnx_path.name
        try:
            if cache is not None:
                engine = cache.get_or_build(be, variant, sm, options)
            else:
                engine = be.build(variant, sm, options)
            break
        except WorkbenchError as e:
            op = be.unsupported_op_type(e, precision) if ready is None else None
            if op and op not in kept and op not in keep_op_types and len(kept) < MAX_KERNEL_FALLBACKS:
                kept.append(op)
                if files.get("onnx"):  # the rebuilt variant has another name (-mixed): drop the stale file
                    (out / files["onnx"]).unlink(missing_ok=True)
                try:
                    more: dict = {}
                    variant = _make_variant(model, precision, calib=calib, keep_nodes=keep_nodes,
                                            keep_op_types=tuple(keep_op_types) + tuple(kept), progress=progress,
                                            recipe_options=recipe_options, backend=be.name,
                                            variant_cache=variant_cache, facts=more)
                    facts.update(recipe_time_s=facts.get("recipe_time_s", 0.0) + more.get("recipe_time_s", 0.0),
                                 variant_cached=more.get("variant_cached", False))
                    continue
                except WorkbenchError as e2:
                    # the build error names the real cause; the failed workaround is the second half of the story
                    e = BuildError(f"{e}; keeping {op} in fp32 to work around it failed: {e2}")
                    e.__cause__ = e2
            rec = _record(model, precision, be, "failed", str(e), variant=variant, options=options, shapes=sm)
            rec.onnx_file = files.get("onnx", "")
            return BuildResult(precision, "failed", str(e), rec, variant=variant, files=files, error=e)
        except Exception as e:
            reason = f"internal error: {type(e).__name__}: {e}"
            rec = _record(model, precision, be, "failed", reason, variant=variant, options=options, shapes=sm)
            return BuildResult(precision, "failed", reason, rec, variant=variant, files=files, internal=True,
                               error=e)
    if kept:
        note = f"kept {', '.join(kept)} in fp32: {be.name} has no {precision} kernel for them"
        why = f"{why}; {note}" if why else note
    rec = engine.record
    status = "cached" if rec.cache_hit else "ok"
    rec.status = status
    if not rec.reason:
        rec.reason = why  # a "supported, but..." note from the backend
    rec.onnx_file = files.get("onnx", "")
    if out is not None and be.serializes_engines:
        engine_path = child_path(out, f"{safe_name(variant.name)}.engine")
        engine.save(engine_path)
        files["engine"] = engine_path.name
        files["record"] = f"{engine_path.name}.json"
    return BuildResult(precision, status, rec.reason, rec, variant=variant, engine=engine, files=files)


def build_engine(model, precision: str | Variant, backend: str | Backend = "onnxruntime", *,
                 shapes: ShapeMap | str | Mapping | None = None, calib=None, options: BuildOptions | None = None,
                 cache: EngineCache | str | os.PathLike | None = None, progress: bool = True,
                 keep_nodes: Iterable[str] = (), keep_op_types: Iterable[str] = (), variant_cache=None,
                 **recipe_options) -> tuple[Variant, Engine]:
    """``(variant, engine)`` of one precision (a name, or a ready :class:`Variant`) through
    :func:`build_variants` (cache, kernel fallback, record). A skipped precision raises ``UnsupportedError``,
    a failed recipe or build raises its error.

    Example::

        variant, engine = build_engine("model.onnx", "fp16", "onnxruntime", progress=False)
    """
    model = load(model)
    result = build_variants(model, [precision], backend, shapes=shapes, calib=calib, options=options, cache=cache,
                            keep_nodes=keep_nodes, keep_op_types=keep_op_types, progress=progress,
                            recipe_options=recipe_options, variant_cache=variant_cache).results[0]
    result.raise_for_status()
    return result.variant, result.engine
