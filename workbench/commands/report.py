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


def add_flow_arguments(p, *, iterations: int = 100) -> None:
    """Options shared by ``report`` and ``demo``."""
    p.add_argument("--iterations", type=positive_int, default=iterations, metavar="N",
                   help=f"timed latency iterations per variant (default: {iterations})")
    p.add_argument("--warmup", type=positive_int, default=10, metavar="N", help="warm-up runs (default: 10)")
    p.add_argument("--layer-iterations", type=positive_int, default=20, metavar="N",
                   help="profiled runs per variant for per-layer times (default: 20)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use at most N samples of --data for accuracy")
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
    add_flow_arguments(p)


def make_report(model, precisions, backends, *, data, labels, calib, shapes, out, iterations, warmup,
                layer_iterations, limit, progress) -> tuple[object, Path, Path, float]:
    """Run the flow, save the records and write the report: (FlowResult, report path, records dir, seconds)."""
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
    from ..fsutil import ensure_dir

    ensure_dir(out.parent)
    ensure_dir(records_dir_for(out))
    t0 = time.perf_counter()
    fr = run_flow(model, precisions, backends, data=data, labels=labels, calib=calib, shapes=shapes,
                  iterations=iterations, warmup=warmup, layer_iterations=layer_iterations, accuracy_limit=limit,
                  progress=progress)
    rec = fr.save(records_dir_for(out))
    write_report(fr, out, records_link=rec.name + "/")
    return fr, out, rec, time.perf_counter() - t0


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
                                     progress=not args.no_progress)
    print(fr.summary_text())
    print(f"wrote {out} and {rec}/ in {secs:.1f} s")
    return exit_code(fr)
