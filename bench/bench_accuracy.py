"""Accuracy deltas: layerwise comparison (every intermediate tensor vs FP32) against Polygraphy, and
``compare_outputs`` over the digits test set.

Layerwise, in process, same feeds, same ONNX Runtime CPU: ours = ``workbench.compare.layerwise`` (mark
every float intermediate in both graphs, run, float64 metrics per tensor, first divergent node); peer =
Polygraphy's ``ModifyOutputs(outputs=MARK_ALL)`` → ``OnnxrtRunner`` for the reference and the variant →
``Comparator.run`` → ``Comparator.compare_accuracy(CompareFunc.simple())``. Both variants are made
beforehand (not timed). Goal: ours no slower than Polygraphy (ratio <= 1.0). Wall time, median of
repetitions (min–max spread).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from _util import spread, timeit

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _polygraphy_layerwise(ref_proto: onnx.ModelProto, var_proto: onnx.ModelProto, feeds: dict):
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, CompareFunc

    def runner(proto, name):
        return OnnxrtRunner(SessionFromOnnx(BytesFromOnnx(ModifyOutputs(proto, outputs=constants.MARK_ALL))),
                            name=name)

    def go():
        results = Comparator.run([runner(ref_proto, "ref"), runner(var_proto, "var")], data_loader=[feeds])
        return Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=1e-3, rtol=1e-3))
    return go


def _load() -> str:
    try:
        return f"loadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "loadavg unknown"


def run(quick: bool) -> list[dict]:
    import workbench as wb
    from workbench.compare import compare_outputs, layerwise
    from workbench.data import synthetic_inputs
    from workbench.precision import make_variant

    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # the peer logs every mismatching tensor otherwise
    repeat, warmup = (1, 0) if quick else (5, 1)
    rows = []

    digits = wb.load(SAMPLES / "digits_cnn.onnx")
    with np.load(SAMPLES / "digits_test.npz") as z:
        images, labels = z["image"].astype(np.float32), z["label"]
    int8 = make_variant(digits, "int8", calib=str(SAMPLES / "digits_calib.npz"), progress=False)
    cases = [("digits CNN int8, batch 32", digits, int8, {"image": images[:32]})]
    r50 = wb.load(LIGHT / "light_resnet50.onnx")
    cases.append(("light ResNet-50 fp16, batch 1", r50, make_variant(r50, "fp16", progress=False),
                  synthetic_inputs(r50)))
    for label, model, var, feeds in cases:
        ours = timeit(lambda: layerwise(model, var, feeds=feeds, progress=False), repeat=repeat, warmup=warmup)
        df = layerwise(model, var, feeds=feeds, progress=False)
        peer = timeit(_polygraphy_layerwise(model.proto_with_data(), var.model.proto_with_data(), feeds),
                      repeat=repeat, warmup=warmup)
        rows.append({"benchmark": f"layerwise compare: {label}", "metric": "wall time", "unit": "s",
                     "ours": ours["median"], "peer": peer["median"], "peer_name": "polygraphy Comparator (mark all)",
                     "ratio": ours["median"] / peer["median"], "goal": "<= 1.0",
                     "met": ours["median"] <= peer["median"], "spread": f"ours {spread(ours)}, peer {spread(peer)}",
                     "notes": f"ours: {len(df)} input-dependent float tensors, first divergent "
                              f"{df.attrs['first_divergent']}, cosine/SNR per node; the peer marks every tensor "
                              f"(weights made by ConstantOfShape included); {_load()}"})

    cmp_t = timeit(lambda: compare_outputs(digits, [int8], data=[{"image": images}], labels=labels, progress=False),
                   repeat=repeat, warmup=warmup)
    cmp = compare_outputs(digits, [int8], data=[{"image": images}], labels=labels, progress=False)
    rows.append({"benchmark": f"compare_outputs: digits int8 vs fp32, {len(images)} samples", "metric": "wall time",
                 "unit": "s", "ours": cmp_t["median"], "peer": None, "peer_name": None, "ratio": None,
                 "goal": None, "met": None, "spread": spread(cmp_t),
                 "notes": f"top1 fp32 {cmp.value(cmp.reference, 'top1'):.4f}, int8 "
                          f"{cmp.value(cmp.variants[0], 'top1'):.4f}; {_load()}"})
    return rows
