"""``workbench demo``: the report on the bundled digits sample — fp32, fp16 and int8 on ONNX Runtime CPU
(and on TensorRT when it is installed and a GPU is present), then the summary table.

Uses ``sample_models/digits_cnn_wide.onnx`` (the digits CNN with 64/128/128 channels, trained on the same
split) with ``digits_test.npz`` (labels key ``label``) and ``digits_calib.npz`` from the source checkout
(or ``--samples DIR``).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import UsageError
from .report import REPORT_LAYERWISE_BUDGET, add_flow_arguments, exit_code, make_report

NAME = "demo"
HELP = "run the report on the bundled digits sample and print the summary"
DESCRIPTION = __doc__
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
FILES = ("digits_cnn_wide.onnx", "digits_test.npz", "digits_calib.npz")
#: Why the wide model: the small ``digits_cnn.onnx`` (16/32/64 channels) runs a batch of 256 in ~1 ms on two
#: cores, and ONNX Runtime's int8 kernels are no faster than fp32 there (1.0x; 1.5x on one thread, but int8
#: gained nothing from the second thread at those widths). With 64/128/128 channels the convolutions dominate
#: and int8 is ~2.3x faster on the same 2-core CPU at the same top-1 (docs/precision.md, "The demo model").
DEMO_BATCH = 64


def add_arguments(p) -> None:
    p.add_argument("--out", default="out/demo", metavar="DIR", help="output folder (default: out/demo)")
    p.add_argument("--samples", default=str(SAMPLES), metavar="DIR", help="folder holding the digits sample files")
    p.add_argument("--precision", default="fp32,fp16,int8", metavar="LIST", help="precisions (default: fp32,fp16,int8)")
    p.add_argument("--batch", type=int, default=DEMO_BATCH, metavar="N",
                   help=f"samples per run (latency is timed on the first batch; default {DEMO_BATCH})")
    add_flow_arguments(p, iterations=200, layerwise_budget=REPORT_LAYERWISE_BUDGET)


def demo_backends() -> list[str]:
    """ONNX Runtime CPU, plus TensorRT when ``tensorrt`` imports and a GPU is usable."""
    from ..backends import get_backend

    out = ["onnxruntime"]
    try:
        if get_backend("tensorrt").available()[0]:
            out.append("tensorrt")
    except Exception:  # noqa: BLE001 - an unusable optional backend just stays out of the demo
        pass
    return out


def run(args) -> int:
    from ._common import parse_precisions

    t0 = time.perf_counter()
    samples = Path(args.samples)
    missing = [f for f in FILES if not (samples / f).exists()]
    if missing:
        raise UsageError(f"digits sample files {missing} not found in {samples}",
                         hint="run from a source checkout, pass --samples DIR, or `make samples`")
    backends = demo_backends()
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    import numpy as np

    with np.load(samples / FILES[1]) as z:
        images, labels = z["image"], z["label"]
    batches = [{"image": images[i:i + args.batch]} for i in range(0, len(images), args.batch)]
    fr, out, rec, secs = make_report(samples / FILES[0], parse_precisions(args.precision), backends,
                                     data=batches, labels=labels, calib=samples / FILES[2], shapes=None,
                                     out=Path(args.out) / "report.html", iterations=args.iterations,
                                     warmup=args.warmup, layer_iterations=args.layer_iterations, limit=args.limit,
                                     layerwise_limit=args.layerwise_limit, time_budget_s=args.time_budget,
                                     latency_samples=args.latency_samples, progress=not args.no_progress,
                                     layerwise_budget=args.layerwise_budget)
    print(f"trt-workbench demo: {Path(FILES[0]).stem} at {', '.join(fr.config['precisions'])} on {', '.join(backends)}")
    print(fr.summary_text())
    print(f"report  {out}")
    print(f"records {rec}/")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return exit_code(fr)
