"""The sweep on ONNX Runtime CUDA through Ray, on one or more GPUs (issues 19 and 20).

    python3 bench/gpu_sweep.py --ray 127.0.0.1:6390 --out OUT/gpu1 [--models-dir DIR]
    python3 bench/gpu_sweep.py --summary OUT/gpu1 OUT/gpu2      # markdown: per-cell table, GPUs, overlap, ratio

3 models (the digits CNN and two real paddle2onnx models of the corpus: the PP-OCRv4 text recognizer and the
PP-OCR direction classifier) × fp32/fp16/bf16/int8 × batch 1/32, each with its own real data and calibration
set. Every cell asks Ray for one GPU (num_gpus=1), so two cells never share a GPU while they are timed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def grid(models_dir: Path):
    m = {"digits_cnn": ROOT / "sample_models" / "digits_cnn.onnx",
         "ppocr_rec_v4": models_dir / "models" / "ppocr_rec_v4.onnx",
         "ppocr_cls_v2": models_dir / "models" / "ppocr_cls_v2.onnx"}
    data = {str(m["digits_cnn"]): str(ROOT / "sample_models" / "digits_test.npz"),
            str(m["ppocr_rec_v4"]): str(models_dir / "data" / "ppocr_rec_v4.npz"),
            str(m["ppocr_cls_v2"]): str(models_dir / "data" / "ppocr_cls_v2.npz")}
    calib = {**data, str(m["digits_cnn"]): str(ROOT / "sample_models" / "digits_calib.npz")}
    labels = {str(m["digits_cnn"]): "label", str(m["ppocr_cls_v2"]): "label"}
    return [str(p) for p in m.values()], data, calib, labels


def run(args) -> None:
    import workbench as wb

    models, data, calib, labels = grid(Path(args.models_dir))
    res = wb.sweep(models, "fp32,fp16,bf16,int8", "onnxruntime-cuda", data=data, calib=calib, labels=labels,
                   batch_sizes=[1, 32], executor=args.ray, out_dir=args.out, iterations=args.iterations,
                   limit=args.limit, progress=False)
    df = res.to_frame()
    print(df[["model", "precision", "batch_size", "status", "p50_ms", "speedup", "cosine", "gpu", "duration_s",
              "reason"]].to_string(index=False, max_colwidth=50))
    print(f"wall {res.wall_s:.1f} s, {res.ran} ran, {res.reused} reused")


def overlap(rows):
    """(max cells running at once, pairs running at once on the same GPU)."""
    iv = [(r["started_at"], r["finished_at"], str(r.get("gpu"))) for r in rows if r.get("started_at")]
    events = sorted([(s, 1) for s, _, _ in iv] + [(e, -1) for _, e, _ in iv])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    shared = sum(1 for i, a in enumerate(iv) for b in iv[i + 1:] if a[2] == b[2] and a[0] < b[1] and b[0] < a[1])
    return peak, shared


def summary(dirs):
    runs = [json.loads((Path(d) / "sweep.json").read_text()) for d in dirs]
    lines = ["| run | cells | ok | wall s | max cells at once | same-GPU overlaps | GPUs used |", "|---|---|---|---|---|---|---|"]
    for d, r in zip(dirs, runs):
        rows = r["rows"]
        peak, shared = overlap(rows)
        gpus = sorted({str(x.get("gpu")) for x in rows if x.get("gpu") not in (None, "")})
        lines.append(f"| {Path(d).name} | {len(rows)} | {sum(x['status'] == 'ok' for x in rows)} | {r['wall_s']:.1f} | "
                     f"{peak} | {shared} | {', '.join(gpus)} |")
    if len(runs) == 2:
        lines.append(f"\nwall-time ratio {Path(dirs[1]).name} / {Path(dirs[0]).name} = "
                     f"{runs[1]['wall_s'] / runs[0]['wall_s']:.2f}")
    last = runs[-1]["rows"]
    lines += ["", "| model | precision | batch | status | p50 ms | speedup | cosine | GPU | reason |",
              "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    for x in last:
        lines.append("| " + " | ".join(fmt(x.get(k)) for k in ("model", "precision", "batch_size", "status", "p50_ms",
                                                               "speedup", "cosine", "gpu")) + f" | {(x.get('reason') or '')[:80]} |")
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ray", default=None)
    ap.add_argument("--out")
    ap.add_argument("--models-dir", default=os.environ.get("WB_REALMODELS_CACHE", "~/.cache/trt-workbench/realmodels"))
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--summary", nargs="+")
    a = ap.parse_args()
    a.models_dir = str(Path(a.models_dir).expanduser())
    summary(a.summary) if a.summary else run(a)
