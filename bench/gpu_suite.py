"""GPU suite: the whole pipeline on an NVIDIA GPU through ONNX Runtime's CUDA provider.

For each model × precision × batch: build the variant on ``onnxruntime-cuda``, latency with CUDA
events, then — in separate runs — per-layer GPU time from CUPTI (``workbench.measure.cupti``) and, for
comparison, ORT's host-side profiler; Σ layers / end-to-end for both; accuracy against the CPU FP32
reference; roofline fractions against peaks measured on the device. Native log lines (ORT, cuDNN) are
captured per build and summarized once. Writes into ``--out``: ``gpu_results.json``, ``gpu_tables.md``,
``gpu_layers.csv`` (CUPTI per-layer rows) and ``cupti_recordings.tar`` (raw CUPTI + ORT trace per row).

    python bench/gpu_suite.py --out OUT [--models digits,transformer,resnet50,ppocr_det,minilm]
                              [--batches 1,32] [--extra-batch 128] [--precisions fp32,tf32,fp16,bf16,int8]
                              [--iterations 200]
    python bench/gpu_suite.py --render OUT RESULTS.json... -- RECORDINGS.tar...   # CPU: recompute + tables

The real models come from the real-model corpus cache (``$WB_REALMODELS_CACHE``, default
``~/.cache/trt-workbench/realmodels``: ``models/ppocr_det_v4.onnx`` + ``data/ppocr_det_v4.npz``,
``models/minilm_torchscript.onnx`` + ``data/minilm_torchscript.npz``).

Needs onnxruntime-gpu with the CUDA provider, cuda-python, and a GPU. TensorRT is used in addition
when ``import tensorrt`` works (``--trt``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tarfile
import tempfile
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
from workbench.measure.native_log import capture_native_output  # noqa: E402
from workbench.measure.roofline import PRECISION_ROOF, measure_peaks, roofline_row  # noqa: E402
from workbench.variant import Variant  # noqa: E402

SAMPLES = ROOT / "sample_models"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
REAL = Path(os.environ.get("WB_REALMODELS_CACHE", Path.home() / ".cache" / "trt-workbench" / "realmodels"))
MODELS = {
    "digits": SAMPLES / "digits_cnn.onnx",
    "transformer": SAMPLES / "transformer_block.onnx",
    "resnet50": LIGHT / "light_resnet50.onnx",
    "ppocr_det": REAL / "models" / "ppocr_det_v4.onnx",  # PP-OCRv4 text detector (DBNet), rapidocr-onnxruntime
    "minilm": REAL / "models" / "minilm_torchscript.onnx",  # all-MiniLM-L6-v2 BERT encoder (exported from its wheel)
}
REAL_DATA = {"ppocr_det": REAL / "data" / "ppocr_det_v4.npz", "minilm": REAL / "data" / "minilm_torchscript.npz"}
SEQ = 128  # transformer sequence length
MINILM_SEQ = 128  # MiniLM: the real 32-token sentences padded to this length
#: models measured at an extra, larger batch as well (GPU-bound sizes; --extra-batch)
EXTRA_BATCH_MODELS = ("resnet50", "ppocr_det", "minilm")


def feeds_for(name: str, model, batch: int) -> dict:
    if name == "digits":
        ds = NpzDataset(SAMPLES / "digits_test.npz", model, label_keys=["label"])
        x = ds.inputs["image"]
        reps = int(np.ceil(batch / len(x)))
        return {"image": np.concatenate([x] * reps)[:batch]}
    if name == "transformer":
        return synthetic_inputs(model, {"x": (batch, SEQ, 64)}, seed=0)
    if name in REAL_DATA:  # real inputs: 16 OCR page crops 3x384x512 / 32 tokenized sentences of 32 tokens
        d = np.load(REAL_DATA[name], allow_pickle=False)
        keys = [i.name for i in model.graph.input]
        reps = int(np.ceil(batch / len(d[keys[0]])))
        feeds = {k: np.concatenate([d[k]] * reps)[:batch] for k in keys}
        if name == "minilm":  # padded to 128 tokens (mask 0), as sentence-transformers batches with max_length 128
            feeds = {k: np.pad(v, ((0, 0), (0, MINILM_SEQ - v.shape[1]))) for k, v in feeds.items()}
        return feeds
    if name == "resnet50":
        # light ResNet-50 has a fixed batch of 1 in its graph: larger batches need a dynamic-batch edit.
        shp = model.graph.input[0].type.tensor_type.shape.dim
        fixed = shp[0].dim_value if shp[0].HasField("dim_value") else None
        if fixed and fixed != batch:
            return {}
        return synthetic_inputs(model, seed=0, batch=batch)
    raise KeyError(name)


def calib_for(name: str, model=None):
    if name == "digits":
        return SAMPLES / "digits_calib.npz"
    if name in REAL_DATA:  # calibrate on the real inputs, one sample per feed
        full = feeds_for(name, model, 16)
        return [{k: v[i:i + 1] for k, v in full.items()} for i in range(16)]
    return "synthetic"


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
             *([f"- command: `{c}`" for c in info["runs"]] + [f"- suite time: {info.get('elapsed_s', 0):.0f} s"]
               if info.get("runs") else [f"- command: `{info['command']}` ({info.get('elapsed_s', 0):.0f} s)"]),
             f"- GPU memory used after the run (NVML): {info.get('nvml_after', {}).get('used_bytes', 0) / 2**30:.1f} GiB",
             "", "Measured peaks (roofs):", "",
             "| roof | value |", "|---|---|"]
    for k, v in peaks["matmul_tflops"].items():
        lines.append(f"| MatMul {k} (n={peaks['matmul_n']}) | {f(v, 4)} TFLOP/s |")
    lines += [f"| device-to-device copy ({peaks['copy_bytes'] / 2**30:.0f} GiB) | {f(peaks['copy_gbps'], 4)} GB/s |", "",
              "Σ GPU / e2e: Σ per-layer GPU time from CUPTI (kernels + copies, separate profiled run) over the mean "
              "end-to-end latency (CUDA events, its own run); ✓ inside 0.85–1.15, ⚑ outside 0.9–1.1 (reason below). "
              "Σ host / e2e: the same from ORT's host-side profiler (the old basis). GPU idle: share of each profiled "
              "run's GPU span with no kernel running.", "",
              "| model | precision | batch | p50 ms | p99 ms | throughput /s | speedup vs fp32 | cosine vs CPU fp32 | "
              "top-1 | % of roofline | Σ GPU / e2e | Σ host / e2e | GPU idle | kernels / run | kept fp32 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = base.get((r["model"], r["batch"]))
        cov = r.get("coverage")
        mark = "" if cov is None else (" ✓" if 0.85 <= cov <= 1.15 else "") + (" ⚑" if r.get("coverage_flagged") else "")
        idle = r.get("gpu_idle_share")
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {f(r['p50_ms'])} | {f(r['p99_ms'])} | "
                     f"{f(r['throughput'], 4)} | {f(sp / r['p50_ms']) if sp else '—'} | {f(r['cosine'], 7)} | "
                     f"{f(r.get('top1'), 4)} | {f(100 * r['fraction_of_roofline'], 2)} | "
                     f"{f(cov)}{mark} | {f(r.get('host_coverage'))} | {'—' if idle is None else f'{100 * idle:.0f}%'} | "
                     f"{f(r.get('gpu_kernels_per_run'), 4)} | {r.get('kept_fp32_op_types') or ''} |")
    inside = [r for r in rows if r.get("coverage") is not None and 0.85 <= r["coverage"] <= 1.15]
    real = {r["model"] for r in inside if r["model"] in ("ppocr_det", "minilm")}
    lines += ["", f"Rows with Σ GPU / e2e within 0.85–1.15: **{len(inside)} of {sum(1 for r in rows if r.get('coverage') is not None)}** "
              f"(real models among them: {', '.join(sorted(real)) or 'none'}).", ""]
    flagged = [r for r in rows if r.get("coverage_flagged")]
    if flagged:
        lines += ["Flagged rows (Σ GPU / e2e outside 0.9–1.1) and why:", ""]
        for r in flagged:
            lines.append(f"- {r['model']} {r['precision']} b{r['batch']}: {f(r['coverage'])} — {r.get('coverage_reason', '')}")
    nl = info.get("native_log") or []
    if nl:
        lines += ["", "Native log lines (ONNX Runtime / cuDNN, captured from stderr; each distinct message once):", ""]
        for m in nl[:12]:
            where = sorted(set(m["where"]))
            lines.append(f"- {m['count']}× `{m['example'][:160]}` ({len(where)} builds: {', '.join(where[:6])}"
                         f"{' …' if len(where) > 6 else ''})" + (f" — {'**fallback**: ' if m['fallback'] else ''}{m['meaning']}"
                                                                  if m["meaning"] else ""))
    if res["errors"]:
        lines += ["", "Failures in this run:", ""] + [f"- {e['model']} {e['precision']} ({e['stage']}): {e['error'][:300]}"
                                                       for e in res["errors"]]
    return "\n".join(lines) + "\n"


def run_precision(name, model, prec, batches, iters, args, gpu, ref_engine, peaks, rows, layer_frames, errors,
                  rec_dir, ref_cache) -> None:
    """Build ``prec`` of ``model`` and measure every batch: latency, accuracy, roofline, then the profiled
    runs (CUPTI GPU per-layer time, and ORT's host profiler for comparison), each separate."""
    try:
        t = time.time()
        variant, engine, kept = build_with_fallback(gpu, model, prec, calib_for(name, model))
        recipe_s = time.time() - t
    except Exception as e:
        errors.append({"model": name, "precision": prec, "stage": "build", "error": f"{type(e).__name__}: {e}"})
        print("ERROR", name, prec, e, flush=True)
        return
    try:
        for batch in batches:
            try:
                feeds = feeds_for(name, model, batch)
                if not feeds:
                    continue
                shapes = {k: v.shape for k, v in feeds.items()}
                lat = measure_latency(engine, feeds, warmup=20, iterations=iters)
                if batch not in ref_cache:
                    ref_cache[batch] = ref_engine.run(feeds)
                ref = ref_cache[batch]
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
                profile_row(row, engine, feeds, lat, name, prec, batch, layer_frames, errors, rec_dir)
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                  if k not in ("coverage_reason",)}), flush=True)
            except Exception as e:
                print(traceback.format_exc(), flush=True)
                errors.append({"model": name, "precision": prec, "batch": batch, "stage": "run",
                               "error": f"{type(e).__name__}: {e}"})
    finally:
        engine.close()


def profile_row(row, engine, feeds, lat, name, prec, batch, layer_frames, errors, rec_dir) -> None:
    """GPU per-layer time (CUPTI) and host per-layer time (ORT profiler), each in its own profiled run
    after the latency run, and their Σ / end-to-end."""
    from workbench.measure.cupti import profile_layers_ort_cupti
    from workbench.measure.layers import coverage, profile_layers_ort

    try:
        rec = rec_dir / f"{name}_{prec}_b{batch}.json.gz"
        lf = profile_layers_ort_cupti(engine, feeds, iterations=10, warmup=3, record_to=rec)
        cov = coverage(lf, lat)
        row.update(layer_sum_ms=cov.layers_ms, coverage=cov.ratio, coverage_flagged=cov.flagged,
                   coverage_reason=cov.reason, time_basis=cov.basis, gpu_busy_ms=lf.attrs["gpu"]["busy_ms"],
                   gpu_idle_share=lf.attrs["gpu"]["idle_share"], alignment=lf.attrs["alignment"]["alignment"],
                   launches_in_nodes=lf.attrs["alignment"]["in_nodes_after"],
                   clock=lf.attrs["alignment"]["clock"], refine_shift_ns=lf.attrs["alignment"]["refine_shift_ns"],
                   copy_ms=float(lf.loc[lf.layer_type == "copy", "time_ms"].sum()),
                   unattributed_ms=float(lf.loc[lf.layer_type == "unattributed", "time_ms"].sum()),
                   gpu_kernels_per_run=float(lf["kernel_count"].sum()))
        layer_frames.append(lf.assign(model=name, batch=batch))
    except Exception as e:
        print(traceback.format_exc(), flush=True)
        errors.append({"model": name, "precision": prec, "batch": batch, "stage": "layers (CUPTI)", "error": str(e)})
    try:
        hf = profile_layers_ort(engine, feeds, iterations=10, timing="host")
        hc = coverage(hf, lat)
        row.update(host_layer_sum_ms=hc.layers_ms, host_coverage=hc.ratio)
    except Exception as e:
        errors.append({"model": name, "precision": prec, "batch": batch, "stage": "layers (host)", "error": str(e)})


def merge_native_logs(native_logs: list[dict]) -> list[dict]:
    """One entry per distinct native message over the whole run: total count, where it appeared."""
    merged: dict[str, dict] = {}
    for entry in native_logs:
        for it in entry["items"]:
            m = merged.setdefault(it["message"], {**it, "count": 0, "where": []})
            m["count"] += it["count"]
            m["where"].append(f"{entry['model']} {entry['precision']}")
    return sorted(merged.values(), key=lambda m: -m["count"])


def rerender(results: list[str], recordings: list[str], out: Path) -> int:
    """Merge suite results and recompute every row's Σ GPU layers / e2e, flag and reason from the raw CUPTI
    recordings with the current attribution code (on any machine, no GPU): the numbers in
    docs/benchmarks-gpu.md are reproducible from the committed raw files."""
    from types import SimpleNamespace

    import pandas as pd

    from workbench.measure import cupti as C
    from workbench.measure.layers import coverage

    merged = None
    for path in results:
        res = json.loads(Path(path).read_text())
        if merged is None:
            merged = res
            merged["info"]["runs"] = [res["info"]["command"]]
        else:
            merged["rows"] += res["rows"]
            merged["errors"] += res["errors"]
            merged["native_logs"] = merged.get("native_logs", []) + res.get("native_logs", [])
            merged["info"]["runs"].append(res["info"]["command"])
            merged["info"]["elapsed_s"] = merged["info"].get("elapsed_s", 0) + res["info"].get("elapsed_s", 0)
    recs = {}
    for tar_path in recordings:
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                recs[m.name] = (tar_path, m.name)
    worst = 0.0
    for r in merged["rows"]:
        key = f"{r['model']}_{r['precision']}_b{r['batch']}.json.gz"
        if key not in recs:
            continue
        with tarfile.open(recs[key][0]) as tar, tempfile.TemporaryDirectory() as td:
            tar.extract(recs[key][1], td)
            rec = C.load_recording(Path(td) / recs[key][1])
        att = C.attribute_recording(rec)
        stats, extra = C.attribution_stats(att)
        rows = [{"time_ms": v["dur_us"] / 1000.0 / att["runs"], "time_basis": v["time_basis"]} for v in stats.values()]
        rows += [{"time_ms": e["gpu_ns"] / 1e6 / att["runs"], "time_basis": "cupti-gpu"} for e in extra]
        df = pd.DataFrame(rows)
        df.attrs.update(time_basis="cupti-gpu", gpu=att["timeline"], cpu_nodes=C.cpu_nodes(att))
        cov = coverage(df, SimpleNamespace(variant=rec["variant"], stats={"mean_ms": r["mean_ms"]}))
        if r.get("layer_sum_ms") is not None:
            worst = max(worst, abs(cov.layers_ms - r["layer_sum_ms"]) / max(r["layer_sum_ms"], 1e-12))
        r.update(layer_sum_ms=cov.layers_ms, coverage=cov.ratio, coverage_flagged=cov.flagged,
                 coverage_reason=cov.reason, gpu_busy_ms=att["timeline"]["busy_ms"],
                 gpu_idle_share=att["timeline"]["idle_share"], cpu_nodes_ms=C.cpu_nodes(att)["ms"],
                 alignment=att["alignment"]["alignment"], launches_in_nodes=att["alignment"]["in_nodes_after"])
    merged["info"]["native_log"] = merge_native_logs(merged.get("native_logs", []))
    merged["info"]["rerendered_from"] = {"results": [Path(p).name for p in results],
                                         "recordings": [Path(p).name for p in recordings],
                                         "max_rel_diff_layer_sum_vs_device": worst}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_results.json").write_text(json.dumps(merged, indent=1, default=str))
    (out / "gpu_tables.md").write_text(render_markdown(json.loads(json.dumps(merged, default=str))))
    print(f"{len(merged['rows'])} rows; Σ GPU layers recomputed from {len(recs)} recordings, "
          f"max relative difference to the on-device value {worst:.2e}")
    return 0


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--render":  # python bench/gpu_suite.py --render OUT RESULTS.json... -- RECORDINGS.tar...
        rest = argv[2:]
        sep = rest.index("--") if "--" in rest else len(rest)
        return rerender(rest[:sep], rest[sep + 1:], Path(argv[1]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="digits,transformer,resnet50,ppocr_det,minilm")
    ap.add_argument("--precisions", default="fp32,tf32,fp16,bf16,int8")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--extra-batch", type=int, default=128, help=f"also this batch for {', '.join(EXTRA_BATCH_MODELS)} (0: none)")
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
    rows, layer_frames, errors, native_logs = [], [], [], []
    rec_dir = Path(tempfile.mkdtemp(prefix="cupti_recordings_"))  # tarred into OUT (few files come back)
    batches = [int(b) for b in args.batches.split(",")]
    for name in args.models.split(","):
        if not MODELS[name].is_file():
            errors.append({"model": name, "precision": "", "stage": "load", "error": f"missing {MODELS[name]}"})
            print("ERROR missing", MODELS[name], flush=True)
            continue
        model = wb.load(MODELS[name])
        if name == "resnet50":
            model = dynamic_batch(model)
        ref_engine = cpu.build(Variant.of(model), options=BuildOptions(progress=False))
        ref_cache: dict = {}  # batch -> CPU fp32 outputs (computed once per model and batch)
        for prec in args.precisions.split(","):
            # ORT and cuDNN write to fd 2 from C++ during builds and first runs: captured, summarized once
            bs = batches + ([args.extra_batch] if args.extra_batch and name in EXTRA_BATCH_MODELS else [])
            with capture_native_output((2,)) as native:
                run_precision(name, model, prec, bs, iters, args, gpu, ref_engine, peaks, rows, layer_frames,
                              errors, rec_dir, ref_cache)
            native_logs.append({"model": name, "precision": prec, "items": native.summary()})
            for item in native.summary()[:3]:
                print(f"  native log {name} {prec}: {item['count']}× {item['example'][:160]}", flush=True)
            write_results(out, info, peaks, rows, errors, native_logs, layer_frames, rec_dir, t_start)  # partial
    write_results(out, info, peaks, rows, errors, native_logs, layer_frames, rec_dir, t_start)
    shutil.rmtree(rec_dir, ignore_errors=True)
    print(f"done in {info['elapsed_s']:.0f} s; {len(rows)} rows, {len(errors)} errors", flush=True)
    return 0


def write_results(out, info, peaks, rows, errors, native_logs, layer_frames, rec_dir, t_start) -> None:
    """Results so far (rewritten after every precision: a run stopped at its time limit keeps them)."""
    info["native_log"] = merge_native_logs(native_logs)
    info["nvml_after"] = gpu_memory_used(0)
    info["elapsed_s"] = time.time() - t_start
    res = {"info": info, "peaks": peaks.to_json(), "rows": rows, "errors": errors, "native_logs": native_logs}
    (out / "gpu_results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "gpu_tables.md").write_text(render_markdown(json.loads(json.dumps(res, default=str))))
    if layer_frames:
        import pandas as pd
        pd.concat(layer_frames).to_csv(out / "gpu_layers.csv", index=False)
    with tarfile.open(out / "cupti_recordings.tar", "w") as tar:
        for f in sorted(rec_dir.glob("*.json.gz")):
            tar.add(f, arcname=f.name)


if __name__ == "__main__":
    raise SystemExit(main())
