"""GPU suite: the whole pipeline on an NVIDIA GPU through ONNX Runtime's CUDA provider.

For each model × precision × batch: build the variant on ``onnxruntime-cuda``, latency with CUDA
events, per-layer timings from ORT profiling, accuracy against the CPU FP32 reference, and roofline
fractions against peaks measured on the device. Writes ``gpu_results.json`` and ``benchmarks-gpu.md``
(tables) into ``--out``.

    python bench/gpu_suite.py --out OUT [--models digits,transformer,resnet50] [--batches 1,32]
                              [--precisions fp32,tf32,fp16,bf16,int8] [--iterations 200] [--quick]

Needs onnxruntime-gpu with the CUDA provider, cuda-python, and a GPU. TensorRT is used in addition
when ``import tensorrt`` works (``--trt``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.backends import BuildOptions, get_backend  # noqa: E402
from workbench.builds import build_variants  # noqa: E402
from workbench.compare import metrics as M  # noqa: E402
from workbench.data import NpzDataset, synthetic_inputs  # noqa: E402
from workbench.device import cuda_device_info, gpu_memory_used  # noqa: E402
from workbench.inspect import inspect  # noqa: E402
from workbench.measure.latency import measure_latency  # noqa: E402
from workbench.measure.roofline import PRECISION_ROOF, measure_peaks, roofline_row  # noqa: E402
from workbench.variant import Variant  # noqa: E402

SAMPLES = ROOT / "sample_models"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = {
    "digits": SAMPLES / "digits_cnn.onnx",
    "transformer": SAMPLES / "transformer_block.onnx",
    "resnet50": LIGHT / "light_resnet50.onnx",
}
SEQ = 128  # transformer sequence length


def feeds_for(name: str, model, batch: int) -> dict:
    if name == "digits":
        ds = NpzDataset(SAMPLES / "digits_test.npz", model, label_keys=["label"])
        x = ds.inputs["image"]
        reps = int(np.ceil(batch / len(x)))
        return {"image": np.concatenate([x] * reps)[:batch]}
    if name == "transformer":
        return synthetic_inputs(model, {"x": (batch, SEQ, 64)}, seed=0)
    if name == "resnet50":
        # light ResNet-50 has a fixed batch of 1 in its graph: larger batches need a dynamic-batch edit.
        shp = model.graph.input[0].type.tensor_type.shape.dim
        fixed = shp[0].dim_value if shp[0].HasField("dim_value") else None
        if fixed and fixed != batch:
            return {}
        return synthetic_inputs(model, seed=0, batch=batch)
    raise KeyError(name)


def calib_for(name: str):
    return SAMPLES / "digits_calib.npz" if name == "digits" else "synthetic"


def dynamic_batch(model):
    """light ResNet-50 is exported with batch 1; make dim 0 symbolic so batch 32 runs (an edit, recorded)."""
    p = model.proto_with_data()
    for io in list(p.graph.input) + list(p.graph.output):
        d = io.type.tensor_type.shape.dim
        if len(d) and d[0].HasField("dim_value") and d[0].dim_value == 1:
            d[0].dim_param = "batch"
    for vi in p.graph.value_info:
        d = vi.type.tensor_type.shape.dim
        if len(d) and d[0].HasField("dim_value") and d[0].dim_value == 1:
            d[0].dim_param = "batch"
    # Reshape targets with a literal batch of 1 would pin the batch: use 0 ("copy dim") where present.
    inits = {i.name: i for i in p.graph.initializer}
    for n in p.graph.node:
        if n.op_type == "Reshape" and n.input[1] in inits:
            arr = onnx.numpy_helper.to_array(inits[n.input[1]]).copy()
            if arr.size and arr[0] == 1:
                arr[0] = 0
                inits[n.input[1]].CopyFrom(onnx.numpy_helper.from_array(arr, n.input[1]))
    return model.derive(p, name=model.name + "-dynbatch")


def build_with_fallback(backend, model, prec, calib):
    """Build through ``build_variants``, which keeps op types the backend has no kernel for in fp32
    (ORT CUDA: bf16 MaxPool/BatchNormalization...) and rebuilds. Returns (variant, engine, kept op types)."""
    r = build_variants(model, [prec], backend, calib=calib if prec in ("int8", "fp8") else None, progress=False)[prec]
    if not r.ok:
        raise wb.BuildError(r.reason)
    return r.variant, r.engine, list(r.variant.recipe.get("keep_op_types", []))


def render_markdown(res: dict) -> str:
    """Tables for docs/benchmarks-gpu.md from gpu_results.json's content."""
    info, peaks, rows = res["info"], res["peaks"], res["rows"]
    dev = info.get("device", {})
    base = {(r["model"], r["batch"]): r["p50_ms"] for r in rows if r["precision"] == "fp32"}
    f = lambda v, n=3: "—" if v is None or v != v else (f"{v:.{n}g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"- date: {info['date']}", f"- device: {dev.get('name')} (compute capability {dev.get('compute_capability')}, "
             f"{dev.get('total_memory_bytes', 0) / 2**30:.0f} GiB, {dev.get('multiprocessors')} SMs), "
             f"driver {info.get('nvml', {}).get('driver', '?')}, CUDA driver API {dev.get('cuda_driver_version')}",
             f"- software: Python {info['python']}, onnxruntime-gpu {info['onnxruntime']}, onnx {info['onnx']}, numpy {info['numpy']}",
             f"- command: `{info['command']}` ({info.get('elapsed_s', 0):.0f} s)",
             f"- GPU memory used after the run (NVML): {info.get('nvml_after', {}).get('used_bytes', 0) / 2**30:.1f} GiB",
             "", "Measured peaks (roofs):", "",
             "| roof | value |", "|---|---|"]
    for k, v in peaks["matmul_tflops"].items():
        lines.append(f"| MatMul {k} (n={peaks['matmul_n']}) | {f(v, 4)} TFLOP/s |")
    lines += [f"| device-to-device copy ({peaks['copy_bytes'] / 2**30:.0f} GiB) | {f(peaks['copy_gbps'], 4)} GB/s |", "",
              "| model | precision | batch | p50 ms | p99 ms | throughput /s | speedup vs fp32 | cosine vs CPU fp32 | "
              "top-1 | achieved TFLOP/s | % of roofline | Σ layers / e2e | kept fp32 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = base.get((r["model"], r["batch"]))
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {f(r['p50_ms'])} | {f(r['p99_ms'])} | "
                     f"{f(r['throughput'], 4)} | {f(sp / r['p50_ms']) if sp else '—'} | {f(r['cosine'], 7)} | "
                     f"{f(r.get('top1'), 4)} | {f(r['achieved_tflops'])} | {f(100 * r['fraction_of_roofline'], 2)} | "
                     f"{f(r.get('coverage'))} | {r.get('kept_fp32_op_types') or ''} |")
    if res["errors"]:
        lines += ["", "Failures in this run:", ""] + [f"- {e['model']} {e['precision']} ({e['stage']}): {e['error'][:300]}"
                                                       for e in res["errors"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="digits,transformer,resnet50")
    ap.add_argument("--precisions", default="fp32,tf32,fp16,bf16,int8")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--backend", default="onnxruntime-cuda", help="onnxruntime for a CPU dry run (no peaks)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    iters = 30 if args.quick else args.iterations
    t_start = time.time()

    import onnxruntime as ort
    info = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": cuda_device_info(0), "nvml": gpu_memory_used(0), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(), "onnx": onnx.__version__,
            "numpy": np.__version__, "command": " ".join(["python", "bench/gpu_suite.py"] + (argv or sys.argv[1:]))}
    print(json.dumps(info, indent=1), flush=True)
    if args.backend == "onnxruntime":
        from workbench.measure.roofline import DevicePeaks
        peaks = DevicePeaks(matmul_tflops={k: float("nan") for k in ("float32", "tf32", "float16", "bfloat16")})
    else:
        peaks = measure_peaks(0, n=4096 if args.quick else 8192)
    print("peaks", peaks.matmul_tflops, f"copy {peaks.copy_gbps:.0f} GB/s", flush=True)
    cpu = get_backend("onnxruntime")
    gpu = get_backend(args.backend)
    rows, layer_frames, errors = [], [], []
    for name in args.models.split(","):
        model = wb.load(MODELS[name])
        if name == "resnet50":
            model = dynamic_batch(model)
        ref_engine = cpu.build(Variant.of(model), options=BuildOptions(progress=False))
        for prec in args.precisions.split(","):
            try:
                t = time.time()
                variant, engine, kept = build_with_fallback(gpu, model, prec, calib_for(name))
                recipe_s = time.time() - t
            except Exception as e:
                errors.append({"model": name, "precision": prec, "stage": "build", "error": f"{type(e).__name__}: {e}"})
                print("ERROR", name, prec, e, flush=True)
                continue
            for batch in [int(b) for b in args.batches.split(",")]:
                try:
                    feeds = feeds_for(name, model, batch)
                    shapes = {k: v.shape for k, v in feeds.items()}
                    lat = measure_latency(engine, feeds, warmup=20, iterations=iters)
                    ref = ref_engine.run(feeds)
                    got = engine.run(feeds)
                    o = ref_engine.output_names[0]
                    ref_o, got_o = ref[o].astype(np.float64), np.asarray(got[o]).astype(np.float64)
                    fl = inspect(model, shapes=shapes)
                    vb = inspect(variant.model, shapes=shapes)
                    vbytes = float(np.nansum([r["bytes"] for r in vb.node_rows]))
                    roof = roofline_row(fl.flops, vbytes, lat.stats["p50_ms"], peaks, PRECISION_ROOF[prec])
                    row = {"model": name, "precision": prec, "batch": batch, **{k: lat.stats[k] for k in
                           ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput")},
                           "timer": getattr(lat, "timer", ""), "cosine": M.cosine_similarity(ref_o, got_o),
                           "max_abs": M.max_abs_error(ref_o, got_o), "snr_db": M.snr_db(ref_o, got_o),
                           "gflops": fl.flops / 1e9, "mbytes": vbytes / 1e6, "recipe_s": recipe_s,
                           "build_s": engine.record.build_time_s, "kept_fp32_op_types": ",".join(kept), **roof}
                    if name == "digits":
                        ds = NpzDataset(SAMPLES / "digits_test.npz", model, label_keys=["label"])
                        logits = np.concatenate([engine.run(b)[o] for b in ds.batches(batch)])
                        row["top1"] = M.top1_accuracy(logits, ds.labels["label"][:len(logits)])
                    if batch == max(int(b) for b in args.batches.split(",")):
                        try:
                            from workbench.measure.layers import profile_layers
                            lf = profile_layers(engine, feeds, iterations=10)
                            lf = lf.assign(model=name, batch=batch)
                            layer_frames.append(lf)
                            row["layer_sum_ms"] = float(lf["time_ms"].sum())
                            row["coverage"] = row["layer_sum_ms"] / lat.stats["mean_ms"]
                        except Exception as e:
                            errors.append({"model": name, "precision": prec, "stage": "layers", "error": str(e)})
                    rows.append(row)
                    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
                except Exception as e:
                    traceback.print_exc()
                    errors.append({"model": name, "precision": prec, "batch": batch, "stage": "run",
                                   "error": f"{type(e).__name__}: {e}"})
            engine.close()
    info["nvml_after"] = gpu_memory_used(0)
    info["elapsed_s"] = time.time() - t_start
    res = {"info": info, "peaks": peaks.to_json(), "rows": rows, "errors": errors}
    (out / "gpu_results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "gpu_tables.md").write_text(render_markdown(json.loads(json.dumps(res, default=str))))
    if layer_frames:
        import pandas as pd
        pd.concat(layer_frames).to_csv(out / "gpu_layers.csv", index=False)
    print(f"done in {info['elapsed_s']:.0f} s; {len(rows)} rows, {len(errors)} errors", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
