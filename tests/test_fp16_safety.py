"""fp16 safety check: LayerNorm/Pow/ReduceMean/Softmax patterns and out-of-range (mask) constants, with the
fp16 recipe's default action, as a per-node table the graph view overlays (issue #14 part 3)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.precision import make_variant
from workbench.precision.fp16safety import (FP16_SAFE_MASK, clamp_mask_constants, fp16_safety,
                                            fp16_safety_overlay, mask_like)
from workbench.precision.validity import strict_problems


def attention_model(fill: float) -> onnx.ModelProto:
    """scores = q @ k^T / 8; masked with Where(mask, scores, fill); Softmax; @ v; then a decomposed LayerNorm
    (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div) and a Pow(x, 3)."""
    f = lambda n, s: h.make_tensor_value_info(n, T.FLOAT, s)  # noqa: E731
    nodes = [
        h.make_node("Transpose", ["x"], ["xt"], name="xt", perm=[0, 2, 1]),
        h.make_node("MatMul", ["x", "xt"], ["s0"], name="qk"),
        h.make_node("Div", ["s0", "eight"], ["s"], name="scale"),
        h.make_node("Where", ["mask", "s", "fill"], ["sm"], name="apply_mask"),
        h.make_node("Softmax", ["sm"], ["p"], name="softmax", axis=-1),
        h.make_node("MatMul", ["p", "x"], ["a"], name="pv"),
        h.make_node("ReduceMean", ["a"], ["mu"], name="ln_mean", axes=[-1]),
        h.make_node("Sub", ["a", "mu"], ["d"], name="ln_sub"),
        h.make_node("Pow", ["d", "two"], ["d2"], name="ln_pow"),
        h.make_node("ReduceMean", ["d2"], ["var"], name="ln_var", axes=[-1]),
        h.make_node("Add", ["var", "eps"], ["ve"], name="ln_add"),
        h.make_node("Sqrt", ["ve"], ["sd"], name="ln_sqrt"),
        h.make_node("Div", ["d", "sd"], ["n"], name="ln_div"),
        h.make_node("Pow", ["n", "three"], ["y"], name="cube"),
    ]
    inits = [nh.from_array(np.array(8.0, np.float32), "eight"), nh.from_array(np.array(fill, np.float32), "fill"),
             nh.from_array(np.array(2.0, np.float32), "two"), nh.from_array(np.array(1e-5, np.float32), "eps"),
             nh.from_array(np.array(3.0, np.float32), "three")]
    g = h.make_graph(nodes, "attn", [f("x", [2, 6, 8]), h.make_tensor_value_info("mask", T.BOOL, [2, 6, 6])],
                     [f("y", [2, 6, 8])], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _feeds():
    rng = np.random.default_rng(0)
    mask = np.ones((2, 6, 6), bool)
    mask[:, :, 4:] = False  # two padded key positions
    return {"x": rng.normal(size=(2, 6, 8)).astype(np.float32), "mask": mask}


def _run(p, feeds):
    return ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_mask_like_values():
    assert mask_like(np.array([0.0, np.finfo(np.float32).min]))
    assert mask_like(np.array(-np.inf, np.float32)) and mask_like(np.array(-1e9, np.float32))
    assert not mask_like(np.array(-10000.0))  # fits fp16 already
    assert not mask_like(np.array([1e9]))  # positive: not a mask fill
    assert not mask_like(np.array([np.nan, -1e9]))


@pytest.mark.parametrize("fill", [float(np.finfo(np.float32).min), -np.inf, -1e9])
def test_safety_table_flags_patterns_with_default_action(fill):
    t = fp16_safety(attention_model(fill))
    by = {(r.onnx_node, r.check): r for r in t.itertuples()}
    assert by[("apply_mask", "mask_constant")].action == f"clamp 'fill' to {FP16_SAFE_MASK:g}"
    assert by[("softmax", "softmax")].value == 2 and "mask clamped" in by[("softmax", "softmax")].action
    for n in ("ln_pow", "ln_var", "ln_add", "ln_sqrt"):
        assert by[(n, "norm_variance")].action == "keep fp32"
    assert by[("cube", "pow")].value == 3  # a risk the recipe leaves in fp16: flagged, not hidden
    assert ("ln_mean", "reduce_sum") in by and by[("ln_mean", "reduce_sum")].value == 1
    ov = fp16_safety_overlay(attention_model(fill))
    assert ov["cube"] == 3.0 and ov["apply_mask"] == 2.0
    from workbench.widgets.graph_view import overlay_values
    assert overlay_values(t)["cube"] == 3.0  # the frame is what GraphView.set_overlay takes
    json.dumps(t.to_dict(orient="records"))


@pytest.mark.parametrize("fill", [float(np.finfo(np.float32).min), -np.inf])
def test_fp16_recipe_clamps_mask_and_matches_fp32(fill):
    src = attention_model(fill)
    v = make_variant(src, "fp16", progress=False)
    rec = v.recipe
    assert set(rec["mask_clamped"]) == {"fill"} and rec["mask_clamped"]["fill"]["clamped_to"] == FP16_SAFE_MASK
    assert "apply_mask" not in rec["kept_high_precision"] and "softmax" not in rec["kept_high_precision"]
    assert {"ln_pow", "ln_var"} <= set(rec["kept_high_precision"])
    assert rec["fp16_safety"]["risks_left_in_fp16"] == ["cube"]
    assert strict_problems(v.model.proto) == []
    feeds = _feeds()
    ref, got = _run(src, feeds), _run(v.model.proto, feeds)
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 5e-3


def test_clamp_only_touches_mask_constants():
    p = attention_model(float(np.finfo(np.float32).min))
    changed = clamp_mask_constants(p)
    vals = {i.name: nh.to_array(i) for i in p.graph.initializer}
    assert set(changed) == {"fill"} and float(vals["fill"]) == FP16_SAFE_MASK and float(vals["eight"]) == 8.0


def test_cli_inspect_fp16_safety(tmp_path, capsys):
    from workbench.cli import main
    path = tmp_path / "attn.onnx"
    onnx.save(attention_model(-1e9), str(path))
    assert main(["inspect", str(path), "--fp16-safety", "--json", "--no-hash"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert {r["check"] for r in js["fp16_safety"]} >= {"mask_constant", "norm_variance", "pow", "softmax"}
    assert main(["inspect", str(path), "--fp16-safety", "--no-hash"]) == 0
    assert "clamp 'fill' to -10000" in capsys.readouterr().out
