"""'Why is this variant slower/faster': per-layer time differences vs fp32 attributed to op types, inserted
Casts, unfused Q/DQ and nodes kept fp32 (issue #14 part 7)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.backends import get_backend
from workbench.compare.speed import attribution_frame, explain_profiles, explain_speed
from workbench.measure.layers import profile_layers
from workbench.precision import make_variant
from workbench.variant import Variant


def _frame(rows):
    return pd.DataFrame([{"layer": r[0], "layer_type": r[1], "onnx_nodes": r[2], "onnx_node": r[3], "time_ms": r[4]}
                         for r in rows])


def test_attribution_categories_on_known_profiles():
    fp32 = _frame([("conv", "Conv", ["conv"], "conv", 4.0), ("ln", "LayerNormalization", ["ln"], "ln", 1.0),
                   ("relu", "Relu", ["relu"], "relu", 0.5), ("copy", "MemcpyToHost", [], "<unmapped>", 0.1)])
    var = _frame([("conv_q", "QLinearConv", ["dq_x", "dq_w", "conv", "q_y"], "conv", 1.5),
                  ("ln", "LayerNormalization", ["ln"], "ln", 1.0), ("cast1", "Cast", ["ln_cast"], "ln_cast", 0.3),
                  ("dq_lone", "DequantizeLinear", ["dq_lone"], "dq_lone", 0.2),
                  ("copy", "MemcpyToHost", [], "<unmapped>", 0.4)])
    from onnx import helper as h
    ops = {"dq_x": "DequantizeLinear", "dq_w": "DequantizeLinear", "conv": "Conv", "q_y": "QuantizeLinear",
           "ln": "LayerNormalization", "ln_cast": "Cast", "dq_lone": "DequantizeLinear"}
    g = h.make_graph([h.make_node(o, [], [n + "_o"], name=n) for n, o in ops.items()], "g", [], [])
    variant = Variant(model=wb.load(h.make_model(g), name="m"), precision="int8",
                      recipe={"kept_high_precision": ["ln"]})
    ex = explain_speed(fp32, var, variant=variant)
    cat = ex.by_category().set_index("category")["delta_ms"].to_dict()
    assert cat["lowered"] == pytest.approx(1.5 - 4.0)  # QLinearConv's time counts for the Conv, not its Q/DQ
    assert cat["kept fp32"] == pytest.approx(0.0)
    assert cat["removed"] == pytest.approx(-0.5)  # relu is gone from the variant graph
    assert cat["inserted Cast"] == pytest.approx(0.3)
    assert cat["unfused Q/DQ"] == pytest.approx(0.2)
    assert cat["backend overhead"] == pytest.approx(0.3)
    assert sum(cat.values()) == pytest.approx(ex.delta_ms) == pytest.approx(var.time_ms.sum() - fp32.time_ms.sum())
    assert ex.summary()[0].startswith("m-int8 (int8) is") and "faster" in ex.summary()[0]
    json.dumps(ex.to_json(), allow_nan=False)
    fig = ex.figure()
    assert fig.data[0].type == "waterfall" and fig.data[0].measure[-1] == "total"


def test_real_profiles_reconcile(sample):
    """Real ORT CPU profiles of the digits CNN at fp32, int8 (TensorRT Q/DQ form) and fp16."""
    m = wb.load(sample("digits_cnn.onnx"))
    with np.load(sample("digits_test.npz")) as z:
        feeds = {"image": z["image"][:64]}
    be = get_backend("onnxruntime")
    calib = sample("digits_calib.npz")
    variants = {"fp32": Variant.of(m), "int8": make_variant(m, "int8", calib=calib, progress=False, target="tensorrt"),
                "fp16": make_variant(m, "fp16", progress=False)}
    frames = []
    for p, v in variants.items():
        df = profile_layers(be.build(v), feeds, iterations=5, warmup=1)
        df["variant"], df["precision"], df["backend"] = v.name, p, be.name
        frames.append(df)
    layers = pd.concat(frames, ignore_index=True)
    out = explain_profiles(layers, variants={v.name: v for v in variants.values()}, model=m)
    assert set(out) == {"digits_cnn-int8@onnxruntime", "digits_cnn-fp16@onnxruntime"}
    for key, ex in out.items():
        assert ex.table.delta_ms.sum() == pytest.approx(ex.delta_ms, abs=1e-9)
        assert set(ex.table.category) <= {"lowered", "kept fp32", "removed", "inserted Cast", "unfused Q/DQ",
                                          "recipe op", "backend overhead"}
    assert "inserted Cast" in set(out["digits_cnn-fp16@onnxruntime"].table.category)  # fp32 I/O casts
    tidy = attribution_frame(out)
    assert list(tidy.columns[:4]) == ["variant", "precision", "category", "op_type"] and len(tidy) > 4
