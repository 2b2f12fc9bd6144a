"""``workbench sweep MODEL [MODEL ...] --backend LIST --precision LIST [--shapes ...] [--ray ADDRESS|local] --out DIR``."""
from __future__ import annotations

from ._common import add_json, emit_json, positive_int

NAME = "sweep"
HELP = "run a grid of models × backends × precisions × shapes (locally or on Ray), cached and resumable"


def add_arguments(p) -> None:
    from ..backends import backend_names
    from ..precision import precision_names

    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX model files")
    p.add_argument("--backend", default="onnxruntime", metavar="LIST",
                   help=f"comma-separated backends from {','.join(backend_names())} (default: onnxruntime)")
    p.add_argument("--precision", default="fp32,fp16,int8", metavar="LIST",
                   help=f"comma-separated precisions from {','.join(precision_names())} (default: fp32,fp16,int8)")
    p.add_argument("--shapes", action="append", default=None, metavar="SPEC",
                   help="a --shapes map (NAME:DIMS[/DIMS/DIMS],...); repeat for several grid points")
    p.add_argument("--batch", default=None, metavar="LIST",
                   help="samples per run on the dynamic batch axis, a grid axis (e.g. 1,32; default: the data's)")
    p.add_argument("--data", default=None, metavar="FILE.npz", help="inputs for latency and accuracy (default: synthetic)")
    p.add_argument("--labels", default=None, metavar="KEY", help="key of integer labels in --data (top-1)")
    p.add_argument("--calib", default=None, metavar="FILE.npz", help="calibration inputs for int8/fp8 (default: --data)")
    p.add_argument("--ray", default=None, metavar="ADDRESS|local",
                   help="run cells as Ray tasks: 'local' starts a Ray runtime here; 'auto' or an address joins a cluster")
    p.add_argument("--cpus-per-cell", type=positive_int, default=None, metavar="N",
                   help="CPUs a CPU-backend cell reserves on Ray (default: all of the smallest node: timings never share cores)")
    p.add_argument("--iterations", type=positive_int, default=50, metavar="N", help="timed runs per cell (default 50)")
    p.add_argument("--limit", type=positive_int, default=64, metavar="N", help="samples of --data to compare (default 64)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for cells/, sweep.json, sweep.csv, sweep.html")
    add_json(p)


def run(args) -> int:
    from ..sweeps import sweep

    from ..errors import UsageError

    executor = None if args.ray is None else ("local-ray" if args.ray == "local" else args.ray)
    batches = None
    if args.batch:
        try:
            batches = [int(b) for b in args.batch.split(",") if b.strip()]
        except ValueError:
            raise UsageError(f"--batch takes comma-separated integers, got {args.batch!r}") from None
    res = sweep(args.models, args.precision, args.backend, shapes=args.shapes, data=args.data, calib=args.calib,
                labels=args.labels, out_dir=args.out, executor=executor, iterations=args.iterations, batch_sizes=batches,
                limit=args.limit, cpus_per_cell=args.cpus_per_cell, progress=not args.json)
    if args.json:
        emit_json(res.to_json())
    else:
        df = res.to_frame()
        cols = ["model", "backend", "precision", "shapes", "batch_size", "status", "p50_ms", "speedup", "cosine", "reason"]
        print(df[cols].to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}", max_colwidth=60))
        print(f"{len(df)} cells ({res.ran} ran, {res.reused} reused) in {res.wall_s:.1f} s -> {res.out_dir}/sweep.html")
    bad = [r for r in res.rows if r.get("status") in ("failed", "lost")]
    internal = [r for r in bad if r.get("internal")]
    return 1 if internal else (2 if bad else 0)
