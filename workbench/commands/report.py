"""``workbench report``: the full flow (inspect → variants → builds → latency → per-layer → accuracy)
written as one self-contained HTML file, with its JSON records beside it (``<report>-records/``).

Exit codes: 0 when the report was written and every precision was built or skipped with a reason;
2 for bad input (model, data, shapes, arguments) or when a variant failed to build or measure (the
report is still written and lists the failure); 1 for an internal error (a bug).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..backends import backend_names
from ._common import (add_batch_axis, add_min_calib_samples, add_model, add_precisions, add_shapes, calibration,
                      dataset, parse_precisions, positive_int)

NAME = "report"
HELP = "run the full flow and write one self-contained HTML report (+ JSON records)"
DESCRIPTION = __doc__


def parse_backends(text: str) -> list[str]:
    items = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [b for b in items if b not in backend_names()]
    if bad or not items:
        raise UsageError(f"unknown backend(s) {bad or text!r}; choose from {', '.join(backend_names())}")
    return items


#: Sample budget of ``workbench report`` (see docs/accuracy.md, "Reports in about a minute"): output
#: metrics over 32 samples settle to a few digits while a 700-node detector still runs in seconds on a
#: laptop CPU; per-node metrics (every tensor of every node, twice) over at most 8 samples and at most
#: 1 GB of compared tensors per variant (one 384x512 page of a 672-node detector is 0.6 GB: ~2 CPU s
#: of runs and folding per sample); latency and per-layer profiling stop after 2 s per variant.
#: Latency and profiling time one-sample runs: a run of 8 detector pages took 1.9 s, so 2 s bought one
#: timed run; one page takes 0.25 s (8 timed runs, and the per-sample latency users serve at).
REPORT_LIMIT, REPORT_LAYERWISE_LIMIT, REPORT_TIME_BUDGET_S, REPORT_LATENCY_SAMPLES = 32, 8, 2.0, 1
REPORT_LAYERWISE_BUDGET = "1GB"
#: The report's cache folder (beside the report: nothing is written outside the chosen folder):
#: ``variants/`` (recipe outputs keyed by content hashes, workbench.variantcache) and ``engines/``.
CACHE_DIR = ".workbench-cache"


def _seconds(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return v


def _bytes(text: str) -> int:
    import argparse

    from ..compare.layerwise import parse_bytes
    from ..errors import WorkbenchError

    try:
        v = parse_bytes(text)
    except (WorkbenchError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a size such as 512MB or 2GB, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 bytes, got {text}")
    return v


def add_flow_arguments(p, *, iterations: int = 100, limit: int | None = None, layerwise_limit: int = 64,
                       time_budget: float | None = None, latency_samples: int | None = None,
                       layerwise_budget: str | None = None) -> None:
    """Options shared by ``report`` and ``demo`` (each with its own sample budget)."""
    p.add_argument("--iterations", type=positive_int, default=iterations, metavar="N",
                   help=f"timed latency iterations per variant (default: {iterations})")
    p.add_argument("--warmup", type=positive_int, default=10, metavar="N", help="warm-up runs (default: 10)")
    p.add_argument("--layer-iterations", type=positive_int, default=20, metavar="N",
                   help="profiled runs per variant for per-layer times (default: 20)")
    p.add_argument("--limit", type=positive_int, default=limit, metavar="N",
                   help="use at most N samples of --data for accuracy (default: "
                        + (f"{limit}, the sample budget" if limit else "all") + ")")
    p.add_argument("--layerwise-limit", type=positive_int, default=layerwise_limit, metavar="N",
                   help=f"samples for the per-node error of each reduced-precision variant (default: {layerwise_limit})")
    p.add_argument("--layerwise-budget", type=_bytes, default=layerwise_budget, metavar="BYTES",
                   help="compared tensors (both graphs, all samples) per variant at most, e.g. 2GB; fewer "
                        "per-node samples when over (default: " + (layerwise_budget or "no limit") + ")")
    p.add_argument("--latency-samples", type=positive_int, default=latency_samples, metavar="N",
                   help="samples per timed run for latency and per-layer profiling (default: "
                        + (f"{latency_samples}" if latency_samples else "the whole first data batch") + ")")
    p.add_argument("--time-budget", type=_seconds, default=time_budget, metavar="S",
                   help="seconds per variant for latency and for per-layer profiling; fewer runs when they are "
                        "slow (default: " + (f"{time_budget:g}" if time_budget else "none: all iterations") + ")")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_arguments(p) -> None:
    add_model(p)
    p.add_argument("--backend", default="onnxruntime", metavar="LIST",
                   help=f"comma-separated backends from {','.join(backend_names())} (default: onnxruntime)")
    add_precisions(p, default="fp32,fp16,int8")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="inputs for latency and accuracy (.npz, keys = input names); default: one synthetic batch")
    p.add_argument("--labels", default=None, metavar="KEY", help="key of integer labels in --data (top-1 accuracy)")
    p.add_argument("--calib", default=None, metavar="FILE.npz", help="calibration inputs for int8/fp8 (default: --data)")
    add_min_calib_samples(p)
    add_batch_axis(p)
    add_shapes(p)
    p.add_argument("--out", required=True, metavar="FILE.html", help="report file; records go to <stem>-records/")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help=f"reuse precision variants (and serialized engines) across reports from this folder "
                        f"(default: {CACHE_DIR}/ beside the report)")
    p.add_argument("--no-cache", action="store_true", help="make every variant again; read and write no cache")
    add_flow_arguments(p, limit=REPORT_LIMIT, layerwise_limit=REPORT_LAYERWISE_LIMIT, time_budget=REPORT_TIME_BUDGET_S,
                       latency_samples=REPORT_LATENCY_SAMPLES, layerwise_budget=REPORT_LAYERWISE_BUDGET)


def make_report(model, precisions, backends, *, data, labels, calib, shapes, out, iterations, warmup,
                layer_iterations, limit, progress, layerwise_limit: int = 64,
                time_budget_s: float | None = None,
                latency_samples: int | None = None, cache_dir="auto",
                layerwise_budget: int | str | None = REPORT_LAYERWISE_BUDGET) -> tuple[object, Path, Path, float]:
    """Run the flow, save the records and write the report: (FlowResult, report path, records dir, seconds).

    ``cache_dir``: variant and engine cache folder ("auto": ``.workbench-cache/`` beside the report; None: no
    cache)."""
    from ..flow import run_flow
    from ..report import records_dir_for, write_report

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out must name an .html file, got {out}")
    if labels is not None and data is None:
        raise UsageError("--labels needs --data")
    from ..model import load

    model = load(model)  # a missing or broken model is the first thing to report
    from ..precision import calibrated

    if calibrated(precisions) and calib is None and data is None:
        raise UsageError("int8/fp8 need calibration data: give --calib FILE.npz (or --data, used for both)")
    # Check the output folders before the (long) flow runs, not after.
    from ..fsutil import ensure_dir, guard_output

    ensure_dir(out.parent)
    guard_output(out, what="the report")  # e.g. the model or the data itself, a FIFO
    ensure_dir(records_dir_for(out))
    variant_cache = engine_cache = None
    if cache_dir is not None:
        from ..backends.cache import EngineCache
        from ..variantcache import VariantCache

        folder = out.parent / CACHE_DIR if cache_dir == "auto" else Path(cache_dir).expanduser()
        variant_cache, engine_cache = VariantCache(folder / "variants"), EngineCache(folder / "engines")
    t0 = time.perf_counter()
    fr = run_flow(model, precisions, backends, data=data, labels=labels, calib=calib, shapes=shapes,
                  iterations=iterations, warmup=warmup, layer_iterations=layer_iterations, accuracy_limit=limit,
                  layerwise_limit=layerwise_limit, time_budget_s=time_budget_s, latency_samples=latency_samples,
                  progress=progress, cache=engine_cache, variant_cache=variant_cache,
                  layerwise_budget=layerwise_budget)
    fr.config["cache_dir"] = str(variant_cache.dir.parent) if variant_cache is not None else None
    rec = fr.save(records_dir_for(out))
    write_report(fr, out, records_link=rec.name + "/")
    return fr, out, rec, time.perf_counter() - t0


def run_facts(fr) -> str:
    """One line: samples used per stage and seconds per stage (what the report's "Run" line says)."""
    c = fr.config
    parts = [f"samples: accuracy {c.get('accuracy_samples', '?')}"
             + (f" (limit {c['accuracy_limit']})" if c.get("accuracy_limit") else ""),
             f"layerwise {c.get('layerwise_samples', '-')}"
             + (f" ({c['layerwise_reason']})" if c.get("layerwise_reason") else "")]
    if c.get("latency_batch"):
        parts.append("latency/profiling " + ("one-sample runs" if c["latency_batch"] == 1 else
                                                f"runs of {c['latency_batch']} samples"))
    if c.get("time_budget_s"):
        parts.append(f"latency/profiling <= {c['time_budget_s']:g} s per variant")
    cpu = c.get("stage_cpu_s") or {}
    stages = ", ".join(f"{k} {v:.1f}" + (f" (cpu {cpu[k]:.1f})" if k in cpu else "") for k, v in fr.timings.items())
    reused = (c.get("reused") or {}).get("build")
    return "; ".join(parts) + f" | stage seconds: {stages}" + (f" | build: {reused}" if reused else "")


def exit_code(fr) -> int:
    """1 if a build failed with an internal error, 2 if any variant failed or a stage errored, else 0."""
    internal = any(r.internal for bs in fr.buildsets.values() for r in bs.results)
    if internal:
        return 1
    failed = fr.builds[fr.builds.status == "failed"] if not fr.builds.empty else fr.builds
    problems = [f"{r.variant} ({r.backend}): {r.reason}" for r in failed.itertuples()]
    problems += [f"{e['stage']} {e['variant']} ({e['backend']}): {e['error']}" for e in fr.errors]
    if problems:
        sys.stderr.write("workbench report: " + "; ".join(problems).replace("\n", " ") + "\n")
        return 2
    return 0


def run(args) -> int:
    from ..model import load

    model = load(args.model)  # for --batch-axis / --min-calib-samples; make_report reads the path itself
    fr, out, rec, secs = make_report(args.model, parse_precisions(args.precision), parse_backends(args.backend),
                                     data=dataset(args, model, args.data, labels=args.labels), labels=args.labels,
                                     calib=calibration(args, model, args.calib, args.data), shapes=args.shapes,
                                     out=args.out, iterations=args.iterations, warmup=args.warmup,
                                     layer_iterations=args.layer_iterations, limit=args.limit,
                                     layerwise_limit=args.layerwise_limit, time_budget_s=args.time_budget,
                                     latency_samples=args.latency_samples, progress=not args.no_progress,
                                     cache_dir=None if args.no_cache else (args.cache_dir or "auto"),
                                     layerwise_budget=args.layerwise_budget)
    print(fr.summary_text())
    print(run_facts(fr))
    print(f"wrote {out} and {rec}/ in {secs:.1f} s")
    return exit_code(fr)
