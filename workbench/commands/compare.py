"""``workbench compare MODEL --precision fp16,int8 [--data FILE.npz] [--labels KEY] [--layerwise [--memory-budget 2GB]]
[--bisect] [--json]``."""
from __future__ import annotations


from ..backends import backend_names
from ._common import (add_backend, add_batch_axis, add_json, add_min_calib_samples, add_model, add_precisions,
                      add_shapes, calibration, dataset, emit_json, number_in_range, parse_precisions, positive_int)

NAME = "compare"
HELP = "compare precision variants with the FP32 reference: output errors, top-1, first diverging node"


_nonneg_float = number_in_range(float, 0)


def _memory_size(text: str) -> int:
    import argparse

    from ..compare.layerwise import parse_bytes
    from ..errors import UsageError

    try:
        return parse_bytes(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p) -> None:
    add_model(p)
    add_backend(p)
    add_precisions(p, default="fp16,int8")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="inputs (keys = input names) and optional labels; default: one synthetic batch")
    p.add_argument("--labels", default=None, metavar="KEY", help="key of integer class labels in --data")
    p.add_argument("--calib", default=None, metavar="FILE.npz",
                   help="calibration inputs for int8/fp8 (default: the --data inputs)")
    add_min_calib_samples(p)
    add_batch_axis(p)
    add_shapes(p)
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="samples per run for a dynamic batch axis (default 32)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use at most N samples of --data")
    p.add_argument("--layerwise", action="store_true",
                   help="also compare every intermediate tensor and report the first diverging node")
    p.add_argument("--threshold", type=float, default=None, metavar="X",
                   help="layerwise divergence threshold on cosine (default 0.999)")
    p.add_argument("--memory-budget", type=_memory_size, default="2GB", metavar="SIZE",
                   help="layerwise: bytes the compared tensors of one run may take, e.g. 2GB, 512MB (default 2GB); "
                        "above it fewer samples run at a time, then tensors are compared in groups over several passes")
    p.add_argument("--bisect", action="store_true",
                   help="layerwise: find the first diverging node by bisection (cut graphs, about log2(n) runs, "
                        "one tensor pair in memory; works on any backend) instead of comparing every tensor")
    p.add_argument("--atol", type=_nonneg_float, default=1e-3, metavar="X", help="absolute tolerance (default 1e-3)")
    p.add_argument("--rtol", type=_nonneg_float, default=1e-3, metavar="Y", help="relative tolerance (default 1e-3)")
    p.add_argument("--topk", type=positive_int, default=5, metavar="K", help="k of topk_agreement (default 5)")
    p.add_argument("--reference-backend", default="onnxruntime", choices=backend_names(),
                   help="backend of the FP32 reference (default: onnxruntime, CPU)")
    add_json(p)


def run(args) -> int:
    from ..compare import compare_outputs, layerwise
    from ..errors import UsageError
    from ..model import load

    precisions = parse_precisions(args.precision)
    from ..precision import calibrated, keeps_graph

    quantized = calibrated(precisions)
    if quantized and not (args.calib or args.data):
        raise UsageError(f"{', '.join(quantized)} needs calibration data: give --calib FILE.npz or --data FILE.npz "
                         "(one array per model input)")
    model = load(args.model)
    data = dataset(args, model, args.data, labels=args.labels)
    cmp = compare_outputs(model, precisions, args.backend, data=data, labels=args.labels,
                          calib=calibration(args, model, args.calib, args.data), shapes=args.shapes, reference_backend=args.reference_backend,
                          atol=args.atol, rtol=args.rtol, batch_size=args.batch, limit=args.limit,
                          topk=args.topk, progress=not args.json)
    if args.bisect:
        from ..compare import first_divergence

        for name, var in cmp.built.items():
            if var.precision in ("fp32", "tf32"):
                continue
            cmp.bisections[name] = first_divergence(model, var, data=data, shapes=args.shapes,
                                                    threshold=args.threshold, limit=args.limit or 64,
                                                    batch_size=args.batch, backend=args.backend,
                                                    reference_backend=args.reference_backend,
                                                    progress=not args.json)
    elif args.layerwise:
        for name, var in cmp.built.items():
            if keeps_graph(var.precision):
                continue
            cmp.layerwise[name] = layerwise(model, var, data=data, shapes=args.shapes,
                                            threshold=args.threshold, limit=args.limit or 64,
                                            batch_size=args.batch, memory_budget=args.memory_budget,
                                            progress=not args.json)
    if args.json:
        emit_json(cmp.to_json())
        return 0
    with _pd_display():
        print(cmp.summary().to_string(index=False))
        for name, df in cmp.layerwise.items():
            cols = ["onnx_node", "op_type", "cosine", "max_abs", "snr_db", "diverged"]
            a = df.attrs
            c = a.get("counts", {})
            print(f"\nlayerwise {name}: first divergent node = {a['first_divergent']}")
            print(f"  {c.get('compared', len(df))} tensors compared, {c.get('unmatched', 0)} unmatched, "
                  f"{c.get('skipped', 0)} skipped (constants, non-float); {a.get('samples')} samples in "
                  f"{a.get('passes')} pass(es), {a.get('run_batch')} at a time; peak RSS "
                  f"{a.get('peak_rss_bytes', 0) / 2**20:.0f} MB; {a.get('seconds')} s")
            print(df[cols].to_string(index=False))
            for u in a.get("unmatched", []):
                print(f"  unmatched {u['tensor']} ({u['onnx_node']}, {u['op_type']}): {u['reason']}")
        for name, b in cmp.bisections.items():
            print(f"\nbisection {name}: first divergent node = {b.first_divergent} (tensor {b.tensor}); "
                  f"{b.runs} cut-graph runs over {b.candidates} candidate tensors on {b.backend}, "
                  f"{b.samples} samples, peak RSS {b.peak_rss_bytes / 2**20:.0f} MB, {b.seconds} s")
            if b.probes:
                print(b.to_frame()[["position", "onnx_node", "op_type", "cosine", "max_abs", "snr_db", "diverged"]]
                      .to_string(index=False))
    for p, why in cmp.skipped.items():
        print(f"skipped {p}: {why}")
    return 0


def _pd_display():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.6g}".format)
