"""Layerwise noise attribution on a planted case (issue 23: "local noise computed from total noise").

A three-node chain ``a = x * w1``, ``b = a * w2``, ``y = b + c``; the "variant" is the same graph with ``w1``
scaled by 1.01 (error planted in the first node) and ``c`` changed (error planted in the last node). Scaling
by a constant carries the relative error through ``b`` unchanged, so ``b`` adds nothing. Every expected
noise ratio is computed here with numpy from the raw arrays.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.compare.layerwise import layerwise


def _chain(w1, w2, c):
    inits = [numpy_helper.from_array(np.array(w1, np.float32), "w1"),
             numpy_helper.from_array(np.array(w2, np.float32), "w2"),
             numpy_helper.from_array(np.array(c, np.float32), "c")]
    nodes = [helper.make_node("Mul", ["x", "w1"], ["a"], name="n1"),
             helper.make_node("Mul", ["a", "w2"], ["b"], name="n2"),
             helper.make_node("Add", ["b", "c"], ["y"], name="n3")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ratio(ref, var):
    ref, var = ref.astype(np.float64), var.astype(np.float64)
    return float(((var - ref) ** 2).sum() / (ref ** 2).sum())


def test_local_noise_is_what_each_node_adds():
    model = wb.load(_chain(2.0, 3.0, 0.0), name="chain")
    variant = model.derive(_chain(2.02, 3.0, 0.5), name="chain-planted")
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    df = layerwise(model, variant, feeds={"x": x}, progress=False).set_index("onnx_node")
    a, b, y = x * np.float32(2.0), x * np.float32(2.0) * np.float32(3.0), x * np.float32(2.0) * np.float32(3.0)
    a2 = x * np.float32(2.02)
    b2 = a2 * np.float32(3.0)
    y2 = b2 + np.float32(0.5)
    expect = {"n1": _ratio(a, a2), "n2": _ratio(b, b2), "n3": _ratio(y, y2)}
    for n, r in expect.items():
        assert df.loc[n, "noise_ratio"] == pytest.approx(r, rel=1e-4), n
    assert expect["n1"] == pytest.approx(1e-4, rel=1e-3)  # the planted 1 % scale
    assert df.loc["n1", "local_noise"] == pytest.approx(expect["n1"], rel=1e-4)  # no compared input upstream
    assert df.loc["n2", "local_noise"] == pytest.approx(0.0, abs=1e-9)          # carried, not added
    assert df.loc["n3", "local_noise"] == pytest.approx(expect["n3"] - expect["n2"], rel=1e-4)
    assert df.loc["n3", "local_noise"] > 10 * df.loc["n1", "local_noise"]
    assert list(df["order"]) == sorted(df["order"])
    # the relative error energy and its dB form agree (noise_ratio = 10^(-snr/10))
    assert df.loc["n3", "snr_db"] == pytest.approx(-10 * np.log10(expect["n3"]), rel=1e-4)


def test_divergence_rule_on_the_planted_case():
    model = wb.load(_chain(2.0, 3.0, 0.0), name="chain")
    variant = model.derive(_chain(2.02, 3.0, 0.5), name="chain-planted")
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    df = layerwise(model, variant, feeds={"x": x}, metric="snr_db", threshold=30.0, progress=False)
    d = df.set_index("onnx_node")
    # n1/n2 are at 40 dB (a 1 % scale), n3 is far below 30 dB: the first divergent node is n3
    assert not d.loc["n1", "diverged"] and not d.loc["n2", "diverged"] and d.loc["n3", "diverged"]
    assert d["first_divergent"].tolist() == [False, False, True]
    assert set(df["divergence_metric"]) == {"snr_db"} and set(df["divergence_threshold"]) == {30.0}
    strict = layerwise(model, variant, feeds={"x": x}, metric="snr_db", threshold=41.0, progress=False)
    assert strict.set_index("onnx_node").loc["n1", "first_divergent"]


def test_divergence_rule_by_hand():
    from workbench.compare.layerwise import _is_diverged, _resolve_threshold
    from workbench.errors import UsageError

    ok = {"nan_count": 0, "inf_count": 0}
    assert not _is_diverged({**ok, "cosine": 0.999}, "cosine", 0.999, True)       # equal: not below
    assert _is_diverged({**ok, "cosine": 0.998}, "cosine", 0.999, True)
    assert _is_diverged({**ok, "max_abs": 5.0}, "max_abs", 1.0, False)            # lower is better
    assert not _is_diverged({**ok, "max_abs": 1.0}, "max_abs", 1.0, False)        # equal: not above
    assert not _is_diverged({**ok, "max_abs": 0.5}, "max_abs", 1.0, False)
    assert _is_diverged({"nan_count": 0, "inf_count": 1, "cosine": 1.0}, "cosine", 0.9, True)
    assert _is_diverged({"nan_count": 2, "inf_count": 0, "cosine": 1.0}, "cosine", 0.9, True)
    assert _is_diverged({**ok, "cosine": float("nan")}, "cosine", 0.9, True)
    assert _resolve_threshold("cosine", -1.0) == (-1.0, True) and _resolve_threshold("cosine", 1.0) == (1.0, True)
    for bad in (1.5, -1.5):
        with pytest.raises(UsageError, match="cosine threshold must lie in"):
            _resolve_threshold("cosine", bad)
