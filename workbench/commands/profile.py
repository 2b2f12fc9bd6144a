"""``workbench profile MODEL --backend B --precision LIST --out DIR [--json]``: end-to-end latency and
per-layer timings of each precision variant (thin over ``workbench.measure.layers.profile``).

Writes ``DIR/<variant>.latency.json`` (a LatencyResult record), ``DIR/<variant>.layers.csv`` (the
per-layer table) and ``DIR/profile.json`` (all entries, rewritten after each variant); ``--json`` prints
the entries on stdout, one per precision, with the latency statistics (``p50_ms``, ...) and the per-layer
coverage.
"""
from __future__ import annotations

from ._common import (add_backend, add_batch_axis, add_json, add_min_calib_samples, add_model, add_precisions,
                      add_shapes, calibration, emit_json, number_in_range, parse_precisions, positive_int)

NAME = "profile"
HELP = "measure latency and per-layer timings (mapped to ONNX nodes) per precision variant"
DESCRIPTION = __doc__


_nonneg_int = number_in_range(int, 0)


def add_arguments(p) -> None:
    add_model(p)
    add_backend(p)
    add_precisions(p)
    add_shapes(p)
    p.add_argument("--iterations", type=positive_int, default=100, metavar="N", help="timed latency iterations (default 100)")
    p.add_argument("--warmup", type=_nonneg_int, default=10, metavar="N", help="untimed warm-up runs (default 10)")
    p.add_argument("--layer-iterations", type=positive_int, default=20, metavar="N",
                   help="profiled iterations for the per-layer table (default 20)")
    p.add_argument("--batch", type=positive_int, default=None, metavar="N", help="batch size for dynamic batch axes")
    p.add_argument("--data", default=None, metavar="FILE.npz", help="inputs (first batch is used); default: synthetic")
    p.add_argument("--calib", default=None, metavar="FILE.npz", help="calibration inputs for int8/fp8 variants")
    add_min_calib_samples(p)
    add_batch_axis(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the CSV/JSON files")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json(p)


def _feeds(model, args):
    from ..data import NpzDataset, first_batch_rows, synthetic_inputs
    from ..errors import DataError

    if args.data:  # only the first batch is read from the file
        ds = NpzDataset(args.data, model, allow_extra=True, batch_axis=args.batch_axis,
                        rows=first_batch_rows(model, args.batch, args.batch_axis))
        feeds = next(iter(ds.batches(args.batch)), None)
        if feeds is None:
            raise DataError(f"{args.data} holds {len(ds)} sample(s): fewer than one batch of the model")
        return feeds
    return synthetic_inputs(model, args.shapes, batch=args.batch, batch_axis=args.batch_axis)


def run(args) -> int:
    from ..backends import get_backend
    from ..builds import build_variants
    from ..errors import BackendUnavailable, UsageError
    from ..fsutil import atomic_write_json, child_path, ensure_dir, guard_output, safe_name
    from ..measure.layers import profile, save_layers_csv
    from ..model import load
    from ..precision import calibrated

    precisions = parse_precisions(args.precision)
    for precision in calibrated(precisions):
        if not args.calib:
            raise UsageError(f"{precision} needs calibration data: give --calib FILE.npz (one array per model input)")
    model = load(args.model)
    backend = get_backend(args.backend)
    ok, why = backend.available()
    if not ok:
        raise BackendUnavailable(f"backend {args.backend} is not usable here: {why}")
    feeds = _feeds(model, args)
    out = ensure_dir(args.out)
    guard_output(out / "profile.json", what="profile.json")  # before measuring: e.g. a model named profile.json
    progress = not args.no_progress
    entries = []
    for precision in precisions:
        # one precision at a time through the one build path (kernel fallback, build record), so only one
        # engine is alive at a time
        calib = calibration(args, model, args.calib) if calibrated([precision]) else None
        built = build_variants(model, [precision], backend, shapes=args.shapes, calib=calib,
                               progress=progress).results[0]
        if built.status == "skipped":
            entries.append({"precision": precision, "backend": backend.name, "status": "skipped",
                            "reason": built.reason})
            continue
        built.raise_for_status()
        variant, engine = built.variant, built.engine
        try:
            prof = profile(engine, feeds, warmup=args.warmup, iterations=args.iterations,
                           layer_iterations=args.layer_iterations, progress=progress)
        finally:
            engine.close()
        stem = safe_name(variant.name)
        lat_path = prof.latency.save(child_path(out, f"{stem}.latency.json"))
        csv_path = save_layers_csv(prof.layers, child_path(out, f"{stem}.layers.csv"))
        entries.append({**prof.latency.to_row(), "status": "ok", "coverage": prof.coverage.to_json(),
                        "layers": int(len(prof.layers)), "layers_csv": str(csv_path), "latency_json": str(lat_path)})
        # rewritten after every variant: a later failure leaves a profile.json that lists what was measured
        atomic_write_json(out / "profile.json", {"model": str(args.model), "entries": entries})
    atomic_write_json(out / "profile.json", {"model": str(args.model), "entries": entries})
    if args.json:
        emit_json(entries)
    else:
        for e in entries:
            if e["status"] != "ok":
                print(f"{e['precision']:<6} skipped: {e['reason']}")
                continue
            cov = e["coverage"]
            flag = f"  (outside 0.9-1.1: {cov.get('reason') or 'see profile.json'})" if cov["flagged"] else ""
            print(f"{e['variant']:<36} p50 {e['p50_ms']:.3f} ms  p99 {e['p99_ms']:.3f} ms  "
                  f"{e['throughput']:.1f} samples/s  layers {e['layers']}  coverage {cov['coverage']:.0%}{flag}")
        print(f"wrote {out}/profile.json")  # stdout: stderr is kept for the one error/warning line
    return 0
