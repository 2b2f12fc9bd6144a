"""Layerwise noise attribution on a planted case (issue 23: "local noise computed from total noise").

A three-node chain ``a = x * w1``, ``b = a * w2``, ``y = b + c``; the "variant" is the same graph with ``w1``
scaled by 1.01 (error planted in the first node) and ``c`` changed (error planted in the last node). Scaling
by a constant carries the relative error through ``b`` unchanged, so ``b`` adds nothing. Every expected
noise ratio is computed here with numpy from the raw arrays.
"""
from __future__ import annotations

import re
import resource
import time

import numpy as np
import pandas as pd
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.compare.layerwise import layerwise, match_tensors

from conftest import DrawnBars


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


# ------------------------------------------------------------------------------------------------------------
# The rest of layerwise(): several batches, memory budget (sub-batches, grouped passes), compare budget, runtime
# shape mismatches, df.attrs, data sources and the progress bar, on tiny graphs with a dynamic batch. Expected
# values come from numpy on the same float32 arrays (ORT's float32 Mul/Add are IEEE single, as numpy's), and
# the byte budgets from the arithmetic in the docstrings: a compared tensor pair of (n, 8) float32 tensors takes
# n * 8 * (4 + 4) bytes, so the three pairs of the chain below take 192 bytes per sample.

CHAIN_BYTES_PER_SAMPLE = 3 * 8 * (4 + 4)
COLUMNS = ["variant", "precision", "order", "onnx_node", "op_type", "tensor", "variant_tensor", "match",
           "max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "nan_count", "inf_count",
           "noise_ratio", "local_noise", "diverged", "first_divergent", "divergence_metric", "divergence_threshold"]


def _dyn_chain(w1=2.0, c=0.0):
    """``a = x * w1`` (n1), ``b = a * 3`` (n2), ``y = b + c`` (n3); input ``x`` of shape (N, 8)."""
    inits = [numpy_helper.from_array(np.full((8,), w1, np.float32), "w1"),
             numpy_helper.from_array(np.full((8,), 3.0, np.float32), "w2"),
             numpy_helper.from_array(np.full((8,), c, np.float32), "c")]
    nodes = [helper.make_node("Mul", ["x", "w1"], ["a"], name="n1"),
             helper.make_node("Mul", ["a", "w2"], ["b"], name="n2"),
             helper.make_node("Add", ["b", "c"], ["y"], name="n3")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def planted():
    model = wb.load(_dyn_chain(), name="chain")
    return model, model.derive(_dyn_chain(2.02, 0.5), name="chain-planted")


def _chain_tensors(x, w1, c):
    a = x * np.float32(w1)
    b = a * np.float32(3.0)
    return {"a": a, "b": b, "y": b + np.float32(c)}


def _expected(x):
    """Per-tensor metrics of the planted variant, from numpy (float64 over all samples of ``x``)."""
    ref, var = _chain_tensors(x, 2.0, 0.0), _chain_tensors(x, 2.02, 0.5)
    out = {}
    for t in ("a", "b", "y"):
        r, v = ref[t].astype(np.float64).ravel(), var[t].astype(np.float64).ravel()
        d = v - r
        out[t] = {"max_abs": np.abs(d).max(), "mean_abs": np.abs(d).mean(), "rmse": np.sqrt((d ** 2).mean()),
                  "max_rel": (np.abs(d) / np.maximum(np.abs(r), 1e-12)).max(),
                  "cosine": (r @ v) / np.sqrt((r @ r) * (v @ v)), "snr_db": 10 * np.log10((r @ r) / (d @ d)),
                  "noise_ratio": (d @ d) / (r @ r)}
    return out


def _assert_metrics(df, x):
    d = df.set_index("tensor")
    for t, m in _expected(x).items():
        for k, v in m.items():
            assert d.loc[t, k] == pytest.approx(v, rel=1e-6), (t, k)


def _batch(seed, n):
    return {"x": np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)}


def test_frame_and_attrs_over_several_batches(planted):
    """Three batches of different sizes: every row and every documented df.attrs entry."""
    model, variant = planted
    data = [_batch(1, 4), _batch(2, 3), _batch(3, 5)]
    t0 = time.perf_counter()
    df = layerwise(model, variant, data=data, progress=False)
    elapsed = time.perf_counter() - t0
    assert list(df.columns) == COLUMNS
    assert list(df.variant) == ["chain-planted-custom"] * 3 and list(df.precision) == ["custom"] * 3
    assert list(df.onnx_node) == ["n1", "n2", "n3"] and list(df.op_type) == ["Mul", "Mul", "Add"]
    assert list(df.tensor) == list(df.variant_tensor) == ["a", "b", "y"] and set(df.match) == {"exact"}
    _assert_metrics(df, np.concatenate([b["x"] for b in data]))
    assert list(df.diverged) == [False, False, True]  # cosine of y below 0.999 (the planted + 0.5)
    a = dict(df.attrs)
    seconds, peak, start = a.pop("seconds"), a.pop("peak_rss_bytes"), a.pop("rss_start_bytes")
    assert a == {"first_divergent": "n3", "metric": "cosine", "threshold": 0.999, "variant": "chain-planted-custom",
                 "precision": "custom", "optimization": "disable", "unmatched": [], "skipped": {},
                 "counts": {"compared": 3, "unmatched": 0, "skipped": 0}, "passes": 1, "run_batch": 5, "runs": 3,
                 "memory_budget": 2 * 1024 ** 3, "estimated_bytes": 5 * CHAIN_BYTES_PER_SAMPLE,  # largest batch
                 "samples": 12, "samples_given": 12, "samples_reason": "", "compare_budget": None, "batches": 3}
    assert 0 < seconds <= elapsed + 1e-3
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the kernel's peak, Linux: KiB
    assert 0 < start <= peak <= max_rss + 2 * 1024 ** 2
    assert wb.compare.layerwise_summary(df)["passes"] == 1  # the summary reads these attrs


_Bar = DrawnBars


@pytest.mark.parametrize("budget, passes, run_batch, est", [
    # 5 samples x 192 B = 960 B > 400 B: runs of 400 // 192 = 2 samples (2, 2, 1); their 384 B fit in one pass
    ("400", 1, 2, 2 * CHAIN_BYTES_PER_SAMPLE),
    # one sample (192 B) does not fit 130 B: runs of 1 sample, tensors in groups of <= 130 B: [a, b], [y]
    (130, 2, 1, 2 * 64),
    # 100 B: one 64 B tensor pair per pass
    (100, 3, 1, 64),
])
def test_memory_budget_passes_give_the_one_pass_metrics(planted, monkeypatch, budget, passes, run_batch, est):
    model, variant = planted
    feeds = _batch(4, 5)
    bar = _Bar(monkeypatch)
    df = layerwise(model, variant, feeds=feeds, memory_budget=budget)  # progress: on by default
    a = df.attrs
    runs = passes * -(-5 // run_batch)
    assert (a["passes"], a["run_batch"], a["runs"], a["estimated_bytes"]) == (passes, run_batch, runs, est)
    assert a["memory_budget"] == int(budget) and a["samples"] == 5 and a["batches"] == 1
    _assert_metrics(df, feeds["x"])
    assert a["first_divergent"] == "n3"
    # the progress bar counts runs (sub-batch x pass) one by one up to the total, names the pass, and is erased
    text = bar.take()
    frames = text.split("\r")
    assert all("layerwise chain-planted-custom" in f for f in frames if f.strip())
    counts = [int(c) for c in re.findall(rf"(\d+)/{runs} \[", text)]
    assert counts and sorted(set(counts)) == list(range(runs + 1)) and counts == sorted(counts)
    assert "run/s" in text
    shown = set(re.findall(r"pass (\d+)/(\d+)", text))
    assert shown == ({(str(i), str(passes)) for i in range(1, passes + 1)} if passes > 1 else set())
    assert text.endswith("\r") and not frames[-2].strip()  # leave=False: the last frame blanks the bar


def test_no_progress_bar_when_asked(planted, monkeypatch):
    model, variant = planted
    bar = _Bar(monkeypatch)
    layerwise(model, variant, feeds=_batch(4, 4), memory_budget=100, progress=False)
    assert bar.take() == ""


def test_memory_budget_none_is_one_pass(planted):
    model, variant = planted
    df = layerwise(model, variant, feeds=_batch(5, 6), memory_budget=None, progress=False)
    assert (df.attrs["passes"], df.attrs["runs"], df.attrs["run_batch"]) == (1, 1, 6)
    assert df.attrs["memory_budget"] is None and df.attrs["estimated_bytes"] == 6 * CHAIN_BYTES_PER_SAMPLE


def test_compare_budget_keeps_the_first_samples_that_fit(planted):
    model, variant = planted
    data = [_batch(1, 4), _batch(2, 3), _batch(3, 5)]
    x = np.concatenate([b["x"] for b in data])
    # 1 KB / 192 B per sample = 5 samples: the first batch and one sample of the second
    df = layerwise(model, variant, data=data, compare_budget="1KB", memory_budget=None, progress=False)
    a = df.attrs
    assert (a["samples"], a["samples_given"], a["batches"], a["compare_budget"]) == (5, 12, 2, 1024)
    assert a["samples_reason"] == ("5 of 12 samples: the compared tensors of one sample take 192 B; "
                                   "compare budget 1.0 KB")
    _assert_metrics(df, x[:5])
    # exactly all 12 samples fit: nothing is cut and nothing is said
    df = layerwise(model, variant, data=data, compare_budget=12 * CHAIN_BYTES_PER_SAMPLE, progress=False)
    assert (df.attrs["samples"], df.attrs["samples_reason"]) == (12, "")
    assert df.attrs["compare_budget"] == 12 * CHAIN_BYTES_PER_SAMPLE
    _assert_metrics(df, x)
    # under one sample: still one sample
    df = layerwise(model, variant, data=data, compare_budget=1, progress=False)
    assert df.attrs["samples"] == 1 and df.attrs["samples_reason"].startswith("1 of 12 samples")
    _assert_metrics(df, x[:1])


def test_compare_budget_when_no_tensor_size_is_known():
    """Sizes shape inference cannot tell (a Reshape to a run-time shape) cost 0 estimated bytes: the compare
    budget then keeps every sample instead of dividing by zero."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "u", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="u")
    df = layerwise(model, model, feeds=_batch(6, 4), compare_budget=1, progress=False)
    assert list(df.tensor) == ["r", "y"] and (df.max_abs == 0).all()
    assert df.attrs["samples"] == 4 and df.attrs["samples_reason"] == "" and df.attrs["estimated_bytes"] == 0
    assert df.attrs["skipped"] == {"not a float tensor": 1}  # the int64 shape


def _runtime_model(variant: bool):
    """x (N, 3, 4) -> Mul(2) m1 -> Relu r -> Add(0.25) a -> Sigmoid s -> Mul(1) y. The variant computes ``r``
    through a Reshape to the run-time shape (N, 4, 3) (shape inference cannot tell) and reshapes it back, and
    replaces the Sigmoid by a HardSigmoid named differently (no name or structure pairs ``s``)."""
    def const(name, v):
        return helper.make_node("Constant", [], [name], name=f"k_{name}",
                                value=numpy_helper.from_array(np.asarray(v, np.int64), name))
    nodes = [helper.make_node("Mul", ["x", "two"], ["m1"], name="mul1")]
    if variant:
        nodes += [helper.make_node("Relu", ["m1"], ["r0"], name="relu"),
                  helper.make_node("Shape", ["x"], ["shp"], name="shape"),
                  const("i0", [0]), const("i1", [1]), const("i2", [2]), const("i3", [3]),
                  helper.make_node("Slice", ["shp", "i0", "i1"], ["d0"], name="s0"),
                  helper.make_node("Slice", ["shp", "i2", "i3"], ["d2"], name="s2"),
                  helper.make_node("Slice", ["shp", "i1", "i2"], ["d1"], name="s1"),
                  helper.make_node("Concat", ["d0", "d2", "d1"], ["tshape"], name="cat", axis=0),
                  helper.make_node("Reshape", ["r0", "tshape"], ["r"], name="swap"),
                  helper.make_node("Reshape", ["r", "shp"], ["r1"], name="back"),
                  helper.make_node("Add", ["r1", "b"], ["a"], name="add"),
                  helper.make_node("HardSigmoid", ["a"], ["t_hs"], name="hs"),
                  helper.make_node("Mul", ["t_hs", "one"], ["y"], name="out")]
    else:
        nodes += [helper.make_node("Relu", ["m1"], ["r"], name="relu"),
                  helper.make_node("Add", ["r", "b"], ["a"], name="add"),
                  helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
                  helper.make_node("Mul", ["s", "one"], ["y"], name="out")]
    inits = [numpy_helper.from_array(np.float32(2.0), "two"), numpy_helper.from_array(np.float32(1.0), "one"),
             numpy_helper.from_array(np.full((3, 4), 0.25, np.float32), "b")]
    g = helper.make_graph(nodes, "rt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4])], inits)
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                   name="rt-var" if variant else "rt")


def test_run_time_shape_mismatch_is_unmatched_and_the_rest_still_compared():
    ref, var = _runtime_model(False), _runtime_model(True)
    rng = np.random.default_rng(7)
    data = [{"x": rng.standard_normal((2, 3, 4)).astype(np.float32)},
            {"x": 3 * rng.standard_normal((3, 3, 4)).astype(np.float32)}]  # the larger errors in batch 2
    df = layerwise(ref, var, data=data, metric="max_abs", threshold=1e-3, progress=False)
    assert list(df.tensor) == ["m1", "a", "y"] and list(df.onnx_node) == ["mul1", "add", "out"]
    un = df.attrs["unmatched"]
    assert [u["tensor"] for u in un] == ["r", "s"]  # topological order (the run-time one was found last)
    assert un[0] == {"onnx_node": "relu", "op_type": "Relu", "tensor": "r",
                     "reason": "shape (2, 3, 4) in the reference but (2, 4, 3) in the variant ('r'): a layout "
                               "change (transpose/reshape) by the recipe"}
    assert (un[1]["onnx_node"], un[1]["op_type"]) == ("sig", "Sigmoid") and "structure" in un[1]["reason"]
    assert df.attrs["counts"] == {"compared": 3, "unmatched": 2, "skipped": 0}
    # both batches are folded into every tensor after the mismatched one
    x = np.concatenate([b["x"] for b in data]).astype(np.float64)
    a = np.maximum(x * 2, 0) + 0.25
    ya, yb = 1 / (1 + np.exp(-a)), np.clip(0.2 * a + 0.5, 0, 1)
    d = df.set_index("tensor")
    assert d.loc["m1", "max_abs"] == 0 and d.loc["a", "max_abs"] == 0
    assert d.loc["y", "max_abs"] == pytest.approx(np.abs(yb - ya).max(), rel=1e-5)
    assert d.loc["y", "mean_abs"] == pytest.approx(np.abs(yb - ya).mean(), rel=1e-5)
    assert df.attrs["first_divergent"] == "out"


def test_model_path_npz_data_default_limit_and_batch_size(planted, tmp_path):
    import onnx

    model, variant = planted
    onnx.save(model.proto_with_data(), tmp_path / "chain.onnx")
    x = np.random.default_rng(8).standard_normal((70, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    df = layerwise(str(tmp_path / "chain.onnx"), variant, data=tmp_path / "d.npz", batch_size=16, progress=False)
    assert (df.attrs["samples"], df.attrs["batches"], df.attrs["run_batch"]) == (64, 4, 16)  # limit=64 by default
    _assert_metrics(df, x[:64])
    df = layerwise(model, variant, data=tmp_path / "d.npz", limit=10, progress=False)
    assert df.attrs["samples"] == 10
    _assert_metrics(df, x[:10])


def test_synthetic_batch_follows_shapes(planted):
    model, variant = planted
    df = layerwise(model, variant, shapes="x:3x8", progress=False)
    assert df.attrs["samples"] == 3
    _assert_metrics(df, wb.synthetic_inputs(model, "x:3x8")["x"])


def test_tensor_map_from_the_recipe_and_from_the_caller(planted):
    """A variant that renamed ``b``: the recipe's tensor_map pairs it ("recorded"); the caller's map is added
    to the recipe's and wins on the same tensor."""
    from workbench.variant import Variant

    model, _ = planted
    p = _dyn_chain(2.02, 0.5)
    p.graph.node[1].output[0] = "bb"
    p.graph.node[2].input[0] = "bb"
    renamed = model.derive(p, name="renamed")
    v = Variant(model=renamed, precision="custom", recipe={"tensor_map": {"b": "bb"}})
    d = layerwise(model, v, feeds=_batch(9, 4), progress=False).set_index("tensor")
    assert (d.loc["b", "variant_tensor"], d.loc["b", "match"]) == ("bb", "recorded")
    assert d.loc["b", "max_abs"] == pytest.approx(_expected(_batch(9, 4)["x"])["b"]["max_abs"], rel=1e-6)
    d = layerwise(model, renamed, feeds=_batch(9, 4), tensor_map={"b": "bb"}, progress=False).set_index("tensor")
    assert (d.loc["b", "variant_tensor"], d.loc["b", "match"]) == ("bb", "recorded")
    v = Variant(model=renamed, precision="custom", recipe={"tensor_map": {"b": "y"}})  # a wrong record
    d = layerwise(model, v, feeds=_batch(9, 4), tensor_map={"b": "bb"}, progress=False).set_index("tensor")
    assert (d.loc["b", "variant_tensor"], d.loc["b", "match"]) == ("bb", "recorded")


def test_variant_by_precision_name(planted, tmp_path, monkeypatch):
    """``variant="fp16"`` / ``"int8"`` build the variant (int8 with ``calib``, showing its calibration bar)."""
    model, _ = planted
    x = _batch(10, 4)["x"]
    df = layerwise(model, "fp16", feeds={"x": x}, progress=False)
    assert list(df.precision) == ["fp16"] * 3 and df.attrs["variant"] == "chain-fp16"
    ref = _chain_tensors(x, 2.0, 0.0)
    for t in ("a", "b", "y"):  # each fp16 op rounds to 11 bits: at most 2^-11 relative per op, 3 ops deep
        assert df.set_index("tensor").loc[t, "max_abs"] <= 3 * 2.0 ** -11 * np.abs(ref[t]).max()
    assert df.set_index("tensor").loc["a", "max_abs"] > 0
    w = np.random.default_rng(11).standard_normal((8, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(w, "w")])
    mm = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="mm")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(12).standard_normal((16, 8)).astype(np.float32))
    bar = _Bar(monkeypatch)
    df = layerwise(mm, "int8", calib=tmp_path / "calib.npz", feeds={"x": x})
    assert list(df.precision) == ["int8"] and list(df.tensor) == ["y"]
    yref = x.astype(np.float64) @ w
    assert 0 < df.max_abs.iloc[0] < 0.05 * np.abs(yref).max()  # int8 error: small, not zero
    text = bar.take()
    assert "calibrating mm" in text and "/16 [" in text and "layerwise mm-int8" in text


def _fixed(model, n):
    """``model`` with its batch dimension fixed to ``n``."""
    p = model.proto_with_data()
    for vi in (p.graph.input[0], p.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = n
    return model.derive(p, name=f"{model.name}{n}")


def test_fixed_batch_uses_tensor_groups_and_whole_batches(planted):
    """A fixed batch cannot be split: the memory budget only groups tensors (one larger than the budget
    stands alone) and the compare budget keeps whole batches."""
    model, variant = (_fixed(m, 4) for m in planted)
    data = [_batch(1, 4), _batch(2, 4), _batch(3, 4)]
    x = np.concatenate([b["x"] for b in data])
    df = layerwise(model, variant, data=data, memory_budget=130, progress=False)
    a = df.attrs
    # each pair of 4 x 8 float32 tensors takes 256 B > 130 B: one pass per tensor, every batch whole
    assert (a["passes"], a["run_batch"], a["runs"], a["estimated_bytes"]) == (3, 4, 9, 256)
    _assert_metrics(df, x)
    df = layerwise(model, variant, data=data, compare_budget="1KB", progress=False)
    # 1 KB holds 5 samples of 192 B; batches of 4 stay whole: 8 samples
    assert (df.attrs["samples"], df.attrs["batches"]) == (8, 2)
    assert df.attrs["samples_reason"].startswith("8 of 12 samples")
    _assert_metrics(df, x[:8])


def test_unknown_tensor_size_counts_as_the_largest_known(planted):
    """x -> Mul a (known size) -> Reshape to a run-time shape r (unknown) -> Relu y (unknown): the estimate
    counts r and y at a's size, so one batch of 4 is 3 x 4 x 64 B."""
    nodes = [helper.make_node("Mul", ["x", "w"], ["a"], name="mul"),
             helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["a", "s"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "u", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.full((8,), 2.0, np.float32), "w")])
    model = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="u")
    df = layerwise(model, model, feeds=_batch(6, 4), memory_budget=None, progress=False)
    assert list(df.tensor) == ["a", "r", "y"] and df.attrs["estimated_bytes"] == 3 * 4 * 64


def test_compare_budget_reason_in_megabytes():
    """One (1, 196608) float32 pair is 1.5 MB per sample: a 2 MB compare budget keeps 1 of 2 samples."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 196608])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 196608])])
    model = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="big")
    x = np.random.default_rng(13).standard_normal((2, 196608)).astype(np.float32)
    df = layerwise(model, model, feeds={"x": x}, compare_budget="2MB", progress=False)
    assert df.attrs["samples_reason"] == ("1 of 2 samples: the compared tensors of one sample take 1.5 MB; "
                                          "compare budget 2.0 MB")


def test_parse_bytes_units():
    from workbench.compare.layerwise import parse_bytes
    from workbench.errors import UsageError

    k, m, g = 1024, 1024 ** 2, 1024 ** 3
    assert [parse_bytes(s) for s in ("2GB", "2 gib", "2g", "512MB", "512m", "512MiB", "3KB", "3k", "3KiB")] == \
        [2 * g, 2 * g, 2 * g, 512 * m, 512 * m, 512 * m, 3 * k, 3 * k, 3 * k]
    assert parse_bytes("1.5g") == int(1.5 * g) and parse_bytes("100") == 100 and parse_bytes("100b") == 100
    assert parse_bytes(1000) == 1000 and parse_bytes(2.5) == 2 and parse_bytes(" 7 MB ") == 7 * m
    for bad in ("-1GB", "0", "0.0k", "lots", "2TB", "2TBB", "GB", "", "nan", "inf", True, 0, -3, float("inf")):
        with pytest.raises(UsageError):
            parse_bytes(bad)


def test_compare_budget_with_under_one_byte_per_sample():
    """A batch-wide scalar (ReduceSum over everything) of a run of 10 samples is 4 + 4 bytes: 0.8 B per sample,
    so a 6-byte compare budget keeps 7 samples."""
    g = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], name="total", keepdims=0)], "sum",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    model = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="sum")
    df = layerwise(model, model, feeds=_batch(14, 10), compare_budget=6, progress=False)
    assert df.attrs["samples"] == 7 and df.attrs["samples_reason"].startswith("7 of 10 samples")
    # the same arithmetic for the memory budget: runs of 7 samples (7, 3), one pass
    df = layerwise(model, model, feeds=_batch(14, 10), memory_budget=6, progress=False)
    assert (df.attrs["run_batch"], df.attrs["runs"], df.attrs["passes"]) == (7, 2, 1)


def _graph(nodes, inputs, outputs, inits=(), name="g"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], list(inits))
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=name)


def test_a_leading_scalar_input_does_not_make_a_batch_one_sample():
    """Inputs (scale: scalar, x: (N, 8)): a batch of 4 is 4 samples (it was counted from the scalar as 1)."""
    f = TensorProto.FLOAT
    model = _graph([helper.make_node("Mul", ["x", "scale"], ["y"], name="mul")],
                   [("scale", f, []), ("x", f, ["N", 8])], [("y", f, ["N", 8])], name="scaled")
    feeds = {"scale": np.array(2.0, np.float32), "x": _batch(15, 4)["x"]}
    df = layerwise(model, model, data=[feeds, feeds], compare_budget=3 * 64, progress=False)
    assert df.attrs["samples_given"] == 8 and df.attrs["samples"] == 4  # 64 B per sample: 3 fit, whole batches
    assert df.attrs["samples_reason"].startswith("4 of 8 samples")


def test_estimate_per_tensor_size_and_element_type(planted):
    """The estimate is each pair's own size: elements x (reference itemsize + variant itemsize)."""
    f, h, d = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE
    model, variant = planted
    one = layerwise(model, variant, feeds=_batch(16, 1), memory_budget=None, progress=False)
    assert one.attrs["estimated_bytes"] == CHAIN_BYTES_PER_SAMPLE  # a batch of one sample
    # (N, 8) then a ReduceSum to (N, 1): 8 x 8 + 1 x 8 bytes per sample
    w = numpy_helper.from_array(np.full((8,), 2.0, np.float32), "w")
    red = _graph([helper.make_node("Mul", ["x", "w"], ["a"], name="mul"),
                  helper.make_node("ReduceSum", ["a", "ax"], ["y"], name="sum", keepdims=1)],
                 [("x", f, ["N", 8])], [("y", f, ["N", 1])],
                 [w, numpy_helper.from_array(np.array([1], np.int64), "ax")], name="red")
    df = layerwise(red, red, feeds=_batch(17, 4), memory_budget=None, progress=False)
    assert df.attrs["estimated_bytes"] == 4 * (8 * 8 + 1 * 8)
    # a variant computing a and b in float16 (y back in float32): 8 x (4 + 2) bytes for a and b, 8 x 8 for y
    def half(name, v):
        return numpy_helper.from_array(np.full((8,), v, np.float16), name)
    f16 = _graph([helper.make_node("Cast", ["x"], ["xh"], name="to16", to=h),
                  helper.make_node("Mul", ["xh", "w1"], ["a"], name="n1"),
                  helper.make_node("Mul", ["a", "w2"], ["b"], name="n2"),
                  helper.make_node("Cast", ["b"], ["bf"], name="to32", to=f),
                  helper.make_node("Add", ["bf", "c"], ["y"], name="n3")],
                 [("x", f, ["N", 8])], [("y", f, ["N", 8])],
                 [half("w1", 2.0), half("w2", 3.0), numpy_helper.from_array(np.zeros(8, np.float32), "c")], name="f16")
    df = layerwise(model, f16, feeds=_batch(18, 4), memory_budget=None, progress=False)
    assert list(df.tensor) == ["a", "b", "y"]
    assert df.attrs["estimated_bytes"] == 4 * (2 * 8 * (4 + 2) + 8 * 8)
    # a float64 reference ("golden") against the float32 chain: 8 x (8 + 4) bytes per tensor
    dbl = _graph([helper.make_node("Mul", ["x", "w1"], ["a"], name="n1"),
                  helper.make_node("Mul", ["a", "w2"], ["b"], name="n2"),
                  helper.make_node("Add", ["b", "c"], ["y"], name="n3")],
                 [("x", d, ["N", 8])], [("y", d, ["N", 8])],
                 [numpy_helper.from_array(np.full((8,), v, np.float64), k) for k, v in (("w1", 2.0), ("w2", 3.0),
                                                                                        ("c", 0.0))], name="dbl")
    df = layerwise(dbl, model, feeds=_batch(19, 4), memory_budget=None, progress=False)
    assert df.attrs["estimated_bytes"] == 4 * 3 * 8 * (8 + 4)


def test_two_samples_over_budget_run_one_at_a_time(planted):
    model, variant = planted
    # 2 x 192 B > 300 B >= 192 B: runs of one sample, all three tensors in one pass
    df = layerwise(model, variant, feeds=_batch(20, 2), memory_budget=300, progress=False)
    a = df.attrs
    assert (a["passes"], a["run_batch"], a["runs"], a["estimated_bytes"]) == (1, 1, 2, CHAIN_BYTES_PER_SAMPLE)
    _assert_metrics(df, _batch(20, 2)["x"])


def test_parse_bytes_ignores_spaces_inside():
    from workbench.compare.layerwise import parse_bytes

    assert parse_bytes("1 024 KB") == 1024 * 1024 and parse_bytes("2 G B") == 2 * 1024 ** 3


def test_summary_unmatched_frame_and_tidy_layout():
    from workbench.compare.layerwise import UNMATCHED_COLUMNS, layerwise_summary, layerwise_tidy, unmatched_frame

    ref, var = _runtime_model(False), _runtime_model(True)
    df = layerwise(ref, var, data=[{"x": np.random.default_rng(21).standard_normal((2, 3, 4)).astype(np.float32)}],
                   metric="max_abs", threshold=1e-3, memory_budget="1MB", progress=False)
    s = layerwise_summary(df)
    assert s == {k: df.attrs[k] for k in ("first_divergent", "metric", "threshold", "counts", "passes", "memory_budget",
                                          "estimated_bytes", "peak_rss_bytes", "samples", "seconds", "unmatched",
                                          "skipped")}
    assert (s["first_divergent"], s["metric"], s["threshold"], s["memory_budget"]) == ("out", "max_abs", 1e-3, 1024 ** 2)
    empty = layerwise_summary(pd.DataFrame())
    assert empty["unmatched"] == [] and empty["skipped"] == {} and empty["first_divergent"] is None
    assert all(empty[k] is None for k in ("metric", "threshold", "counts", "passes", "samples", "seconds"))
    un = unmatched_frame(df)
    assert list(un.columns) == UNMATCHED_COLUMNS == ["variant", "precision", "onnx_node", "op_type", "tensor", "reason"]
    assert un[["variant", "precision", "onnx_node", "op_type", "tensor"]].values.tolist() == [
        ["rt-var-custom", "custom", "relu", "Relu", "r"], ["rt-var-custom", "custom", "sig", "Sigmoid", "s"]]
    assert list(un.reason) == [u["reason"] for u in df.attrs["unmatched"]]
    none = unmatched_frame(layerwise(ref, ref, data=[{"x": np.ones((1, 3, 4), np.float32)}], progress=False))
    assert list(none.columns) == UNMATCHED_COLUMNS and len(none) == 0
    tidy = layerwise_tidy(df)
    metrics = ["max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "nan_count", "inf_count", "noise_ratio",
               "local_noise"]
    assert list(tidy.columns) == ["variant", "onnx_node", "tensor", "metric", "value"]
    assert list(tidy.metric.unique()) == metrics and len(tidy) == len(df) * len(metrics)
    for m in metrics:
        got = tidy[tidy.metric == m].set_index("tensor")["value"]
        assert got.to_dict() == df.set_index("tensor")[m].to_dict(), m


def test_tensor_groups_fill_the_budget_exactly():
    """Four (1, 8) float32 pairs of 64 B each under a 128 B budget: two passes of two tensors (a group may reach the
    budget exactly)."""
    f = TensorProto.FLOAT
    k = [numpy_helper.from_array(np.full((8,), v, np.float32), n) for n, v in (("two", 2.0), ("one", 1.0))]
    model = _graph([helper.make_node("Mul", ["x", "two"], ["a"], name="n1"),
                    helper.make_node("Add", ["a", "one"], ["b"], name="n2"),
                    helper.make_node("Mul", ["b", "two"], ["c"], name="n3"),
                    helper.make_node("Add", ["c", "one"], ["y"], name="n4")],
                   [("x", f, ["N", 8])], [("y", f, ["N", 8])], k, name="four")
    df = layerwise(model, model, feeds=_batch(22, 1), memory_budget=128, progress=False)
    a = df.attrs
    assert (a["passes"], a["runs"], a["estimated_bytes"]) == (2, 2, 128) and list(df.tensor) == ["a", "b", "c", "y"]


def test_inputs_with_different_first_dims_are_not_split(planted):
    """x (4, 8) and z (2, 8): the first axes disagree, so a batch cannot be cut into runs of fewer samples;
    only tensor groups keep the budget (a: 4 x 8 x 8 B = 256 B, b: 2 x 8 x 8 B = 128 B, budget 100 B)."""
    f = TensorProto.FLOAT

    def two(w):
        k = [numpy_helper.from_array(np.full((8,), v, np.float32), n) for n, v in (("w", w), ("three", 3.0))]
        return _graph([helper.make_node("Mul", ["x", "w"], ["a"], name="na"),
                       helper.make_node("Mul", ["z", "three"], ["b"], name="nb")],
                      [("x", f, ["N", 8]), ("z", f, ["M", 8])], [("a", f, ["N", 8]), ("b", f, ["M", 8])], k,
                      name=f"two{w}")
    feeds = {"x": _batch(23, 4)["x"], "z": _batch(24, 2)["x"]}
    df = layerwise(two(2.0), two(2.02), feeds=feeds, memory_budget=100, progress=False)
    a = df.attrs
    assert (a["passes"], a["run_batch"], a["runs"], a["estimated_bytes"]) == (2, 4, 2, 256)
    d = df.set_index("tensor")
    x = feeds["x"]
    assert d.loc["a", "max_abs"] == pytest.approx(np.abs((x * np.float32(2.02)).astype(np.float64) - x * 2.0).max(),
                                                  rel=1e-6)
    assert d.loc["b", "max_abs"] == 0


def test_human_bytes_units():
    """The unit the compare-budget message uses (a GB-sized budget cannot be exercised in a unit test)."""
    from workbench.compare.layerwise import _human_bytes

    assert [_human_bytes(n) for n in (0, 1023, 1024, 1536, 1024 ** 2 - 1, 1024 ** 2, 1024 ** 3 - 1, 1024 ** 3,
                                      5 * 1024 ** 3)] == \
        ["0 B", "1023 B", "1.0 KB", "1.5 KB", "1024.0 KB", "1.0 MB", "1024.0 MB", "1.0 GB", "5.0 GB"]


# ------------------------------------------------------------------------------------------------------------
# Tensor matching (target layerwise-match): which tensor of the variant stands for each reference tensor, and the
# reason given for each one left out, on graphs written here so the right answer is known.
def test_match_tensor_name_rules():
    from workbench.compare.layerwise import match_tensor

    conv = helper.make_node("Conv", ["x", "w"], ["c0", "c1", ""], name="n")
    nodes = {"n": conv}
    assert match_tensor("t", {"t", "t_DequantizeLinear_Output"}) == ("t", "exact")
    assert match_tensor("t", {"t_DequantizeLinear_Output"}) == ("t_DequantizeLinear_Output", "dequantized")
    assert match_tensor("t", set(), ("n", 1), nodes, "Conv") == ("c1", "node-output")
    assert match_tensor("t", set(), ("n", 1), nodes) == ("c1", "node-output")  # no op type: no op check
    assert match_tensor("t", set(), ("n", 1), nodes, "Relu") is None          # same name, another op
    assert match_tensor("t", set(), ("n", 2), nodes, "Conv") is None          # that output is unused ("")
    assert match_tensor("t", set(), ("n", 3), nodes, "Conv") is None          # no such output
    assert match_tensor("t", set(), ("m", 0), nodes, "Conv") is None and match_tensor("t", set()) is None


def test_skipped_tensors_are_counted_by_reason():
    """k2 = k * k and k3 = k2 + k depend on no input (constants); Shape(x) is int64; Foo (a custom op) has a type
    shape inference cannot tell. Only a and y are candidates."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Mul", ["k", "k"], ["k2"], name="k2"), helper.make_node("Add", ["k2", "k"], ["k3"], name="k3"),
             helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Foo", ["x"], ["u"], name="foo",
                                                                                    domain="com.example"),
             helper.make_node("Mul", ["x", "k3"], ["a"], name="mul"), helper.make_node("Relu", ["a"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("x", f, ["N", 8])],
                          [helper.make_tensor_value_info("y", f, ["N", 8])],
                          [numpy_helper.from_array(np.full((8,), 2.0, np.float32), "k")])
    p = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    plan = match_tensors(p, p)
    assert [(q.tensor, q.variant_tensor, q.match) for q in plan.pairs] == [("a", "a", "exact"), ("y", "y", "exact")]
    assert plan.skipped == {"constant (does not depend on a graph input)": 2, "not a float tensor": 1,
                            "type unknown to shape inference": 1}
    assert plan.counts == {"compared": 2, "unmatched": 0, "skipped": 4}
    from workbench.compare.layerwise import layerwise_summary

    model = wb.load(_dyn_chain(), name="chain")  # the summary carries the skip counts of a run
    k = model.proto_with_data()
    k.graph.node.insert(0, helper.make_node("Mul", ["w2", "w2"], ["w4"], name="w4"))
    k.graph.node.append(helper.make_node("Mul", ["y", "w4"], ["z"], name="n4"))
    k.graph.output[0].name = "z"
    m = model.derive(k, name="chain-k")
    df = layerwise(m, m, feeds=_batch(25, 2), progress=False)
    assert layerwise_summary(df)["skipped"] == {"constant (does not depend on a graph input)": 1}


def test_unmatched_reasons_name_what_is_missing():
    """Reference x -> Mul m1 -> Relu r -> Add a -> Relu y. Variant: m1 computed by a Div (no name, no structure
    pairs it), so r and a cannot be paired by structure either (an input is unmatched); y keeps its name."""
    f = TensorProto.FLOAT
    k = [numpy_helper.from_array(np.full((8,), v, np.float32), n) for n, v in (("two", 2.0), ("half", 0.5), ("b", 1.0))]
    ref = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["m1"], name="mul"),
                             helper.make_node("Relu", ["m1"], ["r"], name="relu"),
                             helper.make_node("Add", ["r", "b"], ["a"], name="add"),
                             helper.make_node("Relu", ["a"], ["y"], name="out")], "ref",
                            [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])], k)
    var = helper.make_graph([helper.make_node("Div", ["x", "half"], ["q1"], name="div"),
                             helper.make_node("Relu", ["q1"], ["q2"], name="v_relu"),
                             helper.make_node("Add", ["q2", "b"], ["q3"], name="v_add"),
                             helper.make_node("Relu", ["q3"], ["y"], name="v_out")], "var",
                            [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])], k)
    op = [helper.make_opsetid("", 17)]
    plan = match_tensors(helper.make_model(ref, opset_imports=op), helper.make_model(var, opset_imports=op))
    assert [(q.tensor, q.match) for q in plan.pairs] == [("y", "exact")]
    assert plan.unmatched == [
        {"onnx_node": "mul", "op_type": "Mul", "tensor": "m1", "reason": "no variant tensor has this name or this "
         "node's structure (fused or removed by the recipe's pre-processing)"},
        {"onnx_node": "relu", "op_type": "Relu", "tensor": "r",
         "reason": "no variant tensor has this name, and an input of its node is unmatched"},
        {"onnx_node": "add", "op_type": "Add", "tensor": "a",
         "reason": "no variant tensor has this name, and an input of its node is unmatched"}]
    # two variant Relus read x: which one stands for the reference Relu cannot be told
    two = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["m1"], name="v_mul"),
                             helper.make_node("Relu", ["m1"], ["p"], name="p"), helper.make_node("Relu", ["m1"], ["q"], name="q"),
                             helper.make_node("Add", ["p", "b"], ["a"], name="v_add"),
                             helper.make_node("Relu", ["a"], ["y"], name="v_out")], "two",
                            [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])], k)
    plan = match_tensors(helper.make_model(ref, opset_imports=op), helper.make_model(two, opset_imports=op))
    assert [(q.tensor, q.match) for q in plan.pairs] == [("m1", "exact"), ("a", "exact"), ("y", "exact")]
    assert plan.unmatched == [{"onnx_node": "relu", "op_type": "Relu", "tensor": "r",
                               "reason": "2 variant Relu nodes read the same inputs (ambiguous)"}]


def test_quantizer_that_dropped_a_relu_and_renamed_its_input():
    """ORT's uint8 quantizer removes a Relu before its Q and renames the Mul's output to the Relu's tensor ``r``:
    ``r`` then pairs with its DequantizeLinear output, and the Mul's own tensor with the renamed output."""
    f, u8 = TensorProto.FLOAT, TensorProto.UINT8
    k = [numpy_helper.from_array(np.full((8,), 2.0, np.float32), "w"), numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    ref = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
                             helper.make_node("Relu", ["m"], ["r"], name="relu"),
                             helper.make_node("Add", ["r", "b"], ["y"], name="add")], "ref",
                            [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])], k)
    qk = [numpy_helper.from_array(np.array(0.1, np.float32), "sc"), numpy_helper.from_array(np.array(0, np.uint8), "zp")]
    var = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["r"], name="mul"),
                             helper.make_node("QuantizeLinear", ["r", "sc", "zp"], ["r_QuantizeLinear_Output"], name="q"),
                             helper.make_node("DequantizeLinear", ["r_QuantizeLinear_Output", "sc", "zp"],
                                              ["r_DequantizeLinear_Output"], name="dq"),
                             helper.make_node("Add", ["r_DequantizeLinear_Output", "b"], ["y"], name="add")], "var",
                            [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])],
                            k + qk)
    assert u8  # the zero point's type: uint8 activations
    op = [helper.make_opsetid("", 17)]
    plan = match_tensors(helper.make_model(ref, opset_imports=op), helper.make_model(var, opset_imports=op))
    assert [(q.tensor, q.variant_tensor, q.match) for q in plan.pairs] == [
        ("m", "r", "node-output"), ("r", "r_DequantizeLinear_Output", "dequantized"), ("y", "y", "exact")]
    # a recipe that dropped the float tensor itself: only its DequantizeLinear output is left
    var2 = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
                              helper.make_node("Relu", ["m"], ["rr"], name="v_relu"),
                              helper.make_node("QuantizeLinear", ["rr", "sc", "zp"], ["qq"], name="q"),
                              helper.make_node("DequantizeLinear", ["qq", "sc", "zp"], ["r_DequantizeLinear_Output"], name="dq"),
                              helper.make_node("Add", ["r_DequantizeLinear_Output", "b"], ["y"], name="add")], "var2",
                             [helper.make_tensor_value_info("x", f, ["N", 8])], [helper.make_tensor_value_info("y", f, ["N", 8])],
                             k + qk)
    plan = match_tensors(helper.make_model(ref, opset_imports=op), helper.make_model(var2, opset_imports=op))
    assert [(q.tensor, q.variant_tensor, q.match) for q in plan.pairs] == [
        ("m", "m", "exact"), ("r", "r_DequantizeLinear_Output", "dequantized"), ("y", "y", "exact")]


def test_tensors_read_inside_subgraphs_are_input_dependent():
    """An If whose condition is a constant but whose branches read ``a`` (from x): its output depends on the input.
    A branch's own inputs and initializers shadow outer names; a nested If reaches two levels up."""
    from workbench.compare.layerwise import dynamic_tensors

    f, b = TensorProto.FLOAT, TensorProto.BOOL

    def branch(name, nodes, inits=()):
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info("o", f, None)], list(inits))
    inner = helper.make_node("If", ["c"], ["o"], name="inner",
                             then_branch=branch("t2", [helper.make_node("Identity", ["a"], ["o"])]),
                             else_branch=branch("e2", [helper.make_node("Identity", ["k"], ["o"])]))
    shadow = branch("sh", [helper.make_node("Identity", ["a"], ["o"])], [numpy_helper.from_array(np.ones(8, np.float32), "a")])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("If", ["c"], ["i1"], name="if_reads_a",
                              then_branch=branch("t", [helper.make_node("Identity", ["a"], ["o"])]),
                              else_branch=branch("e", [helper.make_node("Identity", ["k"], ["o"])])),
             helper.make_node("If", ["c"], ["i2"], name="if_nested", then_branch=branch("t1", [inner]),
                              else_branch=branch("e1", [helper.make_node("Identity", ["k"], ["o"])])),
             helper.make_node("If", ["c"], ["i3"], name="if_shadowed", then_branch=shadow,
                              else_branch=branch("e3", [helper.make_node("Identity", ["k"], ["o"])])),
             helper.make_node("If", ["c"], ["i4"], name="if_const",
                              then_branch=branch("t4", [helper.make_node("Identity", ["k"], ["o"])]),
                              else_branch=branch("e4", [helper.make_node("Identity", ["k"], ["o"])]))]
    g = helper.make_graph(nodes, "ifs", [helper.make_tensor_value_info("x", f, [8])],
                          [helper.make_tensor_value_info(o, f, None) for o in ("i1", "i2", "i3", "i4")],
                          [numpy_helper.from_array(np.array(True), "c"), numpy_helper.from_array(np.zeros(8, np.float32), "k")])
    assert b and dynamic_tensors(g) == {"x", "a", "i1", "i2"}


def test_cut_model_types_its_output_and_keeps_only_needed_value_info():
    from workbench.compare.layerwise import cut_model

    model = wb.load(_dyn_chain(), name="chain")
    p = onnx.shape_inference.infer_shapes(model.proto_with_data())
    assert {v.name for v in p.graph.value_info} == {"a", "b"}
    cut = cut_model(p, ["a"], {})  # a type map that lacks the output: shape inference types it
    assert [(o.name, o.type.tensor_type.elem_type) for o in cut.graph.output] == [("a", TensorProto.FLOAT)]
    assert [v.name for v in cut.graph.value_info] == ["a"] and [n.name for n in cut.graph.node] == ["n1"]
    cut = cut_model(p, ["b"])  # b's value_info stays; nothing of y, which is cut off
    assert [v.name for v in cut.graph.value_info] == ["a", "b"] and [n.name for n in cut.graph.node] == ["n1", "n2"]


def test_unmatched_frame_precision_of_a_frame_without_rows():
    """A frame filtered down to no rows (or built by hand) takes the precision from its attrs."""
    from workbench.compare.layerwise import unmatched_frame

    u = {"onnx_node": "n", "op_type": "Relu", "tensor": "t", "reason": "why"}
    empty = pd.DataFrame({"precision": pd.Series([], dtype=str)})
    empty.attrs.update(variant="v", precision="int8", unmatched=[u])
    assert unmatched_frame(empty).values.tolist() == [["v", "int8", "n", "Relu", "t", "why"]]
    one = pd.DataFrame({"precision": ["fp16"]})
    one.attrs.update(variant="v", unmatched=[u])
    assert unmatched_frame(one).values.tolist() == [["v", "fp16", "n", "Relu", "t", "why"]]


# ------------------------------------------------------------------------------------------ session 27: matching survivors
_F = TensorProto.FLOAT


def _proto(nodes, inputs, outputs, inits=(), extra_opsets=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), *extra_opsets])


def _k(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _plan(plan):
    return [(p.tensor, p.variant_tensor, p.match) for p in plan.pairs], {u["tensor"]: u["reason"] for u in plan.unmatched}


def test_a_same_named_tensor_of_another_layout_is_unmatched_with_both_shapes():
    """The variant computes ``r`` from a transposed x, (N, 4, 3) for (N, 3, 4), known from shape inference alone:
    unmatched, the reason showing the symbolic dim as '?'; ``y`` of another rank, (N, 12) vs (N, 3, 4), likewise."""
    ref = _proto([helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Sigmoid", ["r"], ["y"], name="sig")],
                 [("x", _F, ["N", 3, 4])], [("y", _F, ["N", 3, 4])])
    var = _proto([helper.make_node("Transpose", ["x"], ["xt"], name="tr", perm=[0, 2, 1]),
                  helper.make_node("Relu", ["xt"], ["r"], name="v_relu"),
                  helper.make_node("Sigmoid", ["r"], ["s"], name="v_sig"),
                  helper.make_node("Reshape", ["s", "shp"], ["y"], name="flat")],
                 [("x", _F, ["N", 3, 4])], [("y", _F, ["N", 12])], [_k("shp", [0, 12], np.int64)])
    pairs, un = _plan(match_tensors(ref, var))
    assert pairs == []
    assert un == {"r": "shape (?, 3, 4) in the reference but (?, 4, 3) in the variant ('r'): a layout change "
                       "(transpose/reshape) by the recipe",
                  "y": "shape (?, 3, 4) in the reference but (?, 12) in the variant ('y'): a layout change "
                       "(transpose/reshape) by the recipe"}


def test_a_structural_pair_is_shape_checked_too():
    """No name pairs ``t``; the variant's Reshape of x is the structural candidate, but to (N, 3, 4) instead of
    (N, 12): unmatched with the shape reason, not paired."""
    ref = _proto([helper.make_node("Reshape", ["x", "s1"], ["t"], name="rs"), helper.make_node("Relu", ["t"], ["y"], name="relu")],
                 [("x", _F, ["N", 12])], [("y", _F, ["N", 12])], [_k("s1", [0, 12], np.int64)])
    var = _proto([helper.make_node("Reshape", ["x", "s2"], ["u"], name="other"),
                  helper.make_node("Relu", ["u"], ["v"], name="v_relu")],
                 [("x", _F, ["N", 12])], [("v", _F, ["N", 3, 4])], [_k("s2", [0, 3, 4], np.int64)])
    pairs, un = _plan(match_tensors(ref, var))
    assert un["t"] == ("shape (?, 12) in the reference but (?, 3, 4) in the variant ('u'): a layout change "
                       "(transpose/reshape) by the recipe")
    assert "t" not in [p[0] for p in pairs]


def test_a_variant_tensor_of_unknown_type_and_shape_counts_as_float():
    """``t`` in the variant comes from a custom op (com.example): ONNX shape inference knows neither its type nor
    its shape. It still pairs by name (an unknown shape conflicts with nothing) and is sized as float32."""
    ref = _proto([helper.make_node("Mul", ["x", "two"], ["t"], name="mul"), helper.make_node("Relu", ["t"], ["y"], name="relu")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], [_k("two", 2.0)])
    var = _proto([helper.make_node("FastMul", ["x"], ["t"], name="mul", domain="com.example"),
                  helper.make_node("Relu", ["t"], ["y"], name="relu")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], extra_opsets=[helper.make_opsetid("com.example", 1)])
    plan = match_tensors(ref, var)
    assert [(p.tensor, p.match, p.var_type) for p in plan.pairs] == [("t", "exact", _F), ("y", "exact", _F)]
    assert plan.unmatched == []


def test_an_integer_variant_tensor_cannot_stand_for_a_float_one():
    """The recipe turned ``t`` into int8 under the same name (and the caller maps ``y`` onto it too)."""
    ref = _proto([helper.make_node("Mul", ["x", "two"], ["t"], name="mul"), helper.make_node("Relu", ["t"], ["y"], name="relu")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], [_k("two", 2.0)])
    var = _proto([helper.make_node("QuantizeLinear", ["x", "sc"], ["t"], name="q"),
                  helper.make_node("DequantizeLinear", ["t", "sc"], ["d"], name="dq"),
                  helper.make_node("Relu", ["d"], ["z"], name="v_relu")],
                 [("x", _F, ["N", 8])], [("z", _F, ["N", 8])], [_k("sc", 0.1)])
    pairs, un = _plan(match_tensors(ref, var, tensor_map={"y": "t"}))
    assert un["t"] == "variant tensor 't' is not float (UINT8)"
    assert un["y"] == "variant tensor 't' is not float (UINT8)"


def test_partial_input_shapes_pin_only_the_inputs_they_name():
    """input_shapes for x only: tensors of x get their element count, those of the second input stay unknown."""
    ref = _proto([helper.make_node("Relu", ["x"], ["a"], name="ra"), helper.make_node("Relu", ["u"], ["b"], name="rb")],
                 [("x", _F, ["N", 8]), ("u", _F, ["M", 3])], [("a", _F, ["N", 8]), ("b", _F, ["M", 3])])
    plan = match_tensors(ref, ref, input_shapes={"x": (2, 8)})
    assert [(p.tensor, p.elements) for p in plan.pairs] == [("a", 16), ("b", None)]


def test_a_sequence_value_info_does_not_hide_the_tensors_after_it():
    """SplitToSequence makes a sequence-typed value_info (no tensor type) before ``a``: ``a`` is still typed."""
    ref = _proto([helper.make_node("SplitToSequence", ["x"], ["seq"], name="split", axis=1, keepdims=1),
                  helper.make_node("SequenceAt", ["seq", "i0"], ["a"], name="at"),
                  helper.make_node("Relu", ["a"], ["y"], name="relu")],
                 [("x", _F, ["N", 2])], [("y", _F, None)], [_k("i0", 0, np.int64)])
    inferred = onnx.shape_inference.infer_shapes(ref)
    vis = [v.name for v in inferred.graph.value_info]
    assert vis.index("seq") < vis.index("a")  # the order the check needs
    plan = match_tensors(ref, ref)
    assert [p.tensor for p in plan.pairs] == ["a", "y"]
    assert plan.skipped == {"type unknown to shape inference": 1}  # the sequence itself


def test_two_int_tensors_are_counted_as_two():
    ref = _proto([helper.make_node("Shape", ["x"], ["s1"], name="shape1"), helper.make_node("Shape", ["x"], ["s2"], name="shape2"),
                  helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    assert match_tensors(ref, ref).skipped == {"not a float tensor": 2}


def test_optional_outputs_an_empty_name_and_a_variant_without_them():
    """LayerNormalization with outputs (Y, '', InvStdDev): the empty optional output is not a tensor, the one after it
    is a candidate. The variant's LayerNormalization (renamed) writes Y only: Y pairs by structure, InvStdDev has
    no counterpart (the variant node has no such output) and is unmatched, not an error."""
    ins = ["x", "g", "b"]
    inits = [_k("g", np.ones(4)), _k("b", np.zeros(4))]
    ref = _proto([helper.make_node("LayerNormalization", ins, ["y", "", "istd"], name="ln", axis=-1)],
                 [("x", _F, ["N", 4])], [("y", _F, ["N", 4]), ("istd", _F, None)], inits)
    var = _proto([helper.make_node("LayerNormalization", ins, ["v"], name="v_ln", axis=-1)],
                 [("x", _F, ["N", 4])], [("v", _F, ["N", 4])], inits)
    pairs, un = _plan(match_tensors(ref, var))
    assert pairs == [("y", "v", "structural")]
    assert un == {"istd": "no variant tensor has this name or this node's structure (fused or removed by the "
                          "recipe's pre-processing)"}
    # Mean (output 1) against a one-output variant node: index 1 is just past its outputs
    ref = _proto([helper.make_node("LayerNormalization", ins, ["y", "mean"], name="ln", axis=-1)],
                 [("x", _F, ["N", 4])], [("y", _F, ["N", 4]), ("mean", _F, None)], inits)
    pairs, un = _plan(match_tensors(ref, var))
    assert pairs == [("y", "v", "structural")] and list(un) == ["mean"]


def test_node_output_rule_needs_the_same_op_and_runs_after_exact_names():
    """``act`` is a Relu in the reference and a Sigmoid (same node name, other tensor) in the variant: not the same
    computation, so no pair. ``s`` (node "sig", output renamed in the variant) pairs by the node-output rule even
    though an exact name (``r``) was paired before it."""
    two = _k("two", 2.0)
    ref = _proto([helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Sigmoid", ["r"], ["s"], name="sig"),
                  helper.make_node("Relu", ["s"], ["a"], name="act"), helper.make_node("Mul", ["a", "two"], ["y"], name="mul")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], [two])
    var = _proto([helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Sigmoid", ["r"], ["s2"], name="sig"),
                  helper.make_node("Sigmoid", ["s2"], ["b"], name="act"), helper.make_node("Mul", ["b", "two"], ["y"], name="mul")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], [two])
    pairs, un = _plan(match_tensors(ref, var))
    assert pairs == [("r", "r", "exact"), ("s", "s2", "node-output"), ("y", "y", "exact")]
    assert un == {"a": "no variant tensor has this name or this node's structure (fused or removed by the "
                       "recipe's pre-processing)"}


def test_a_variant_tensor_pairs_with_one_reference_tensor_only():
    """The caller maps both a and b onto the variant's ``q``: b is told whom q already pairs with. A duplicated
    Relu of the reference (r1, r2 = Relu(x)) pairs once by structure; the second finds nothing left."""
    ref = _proto([helper.make_node("Relu", ["x"], ["a"], name="ra"), helper.make_node("Sigmoid", ["x"], ["b"], name="sb"),
                  helper.make_node("Add", ["a", "b"], ["y"], name="add")], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    var = _proto([helper.make_node("Relu", ["x"], ["q"], name="vq"), helper.make_node("Add", ["q", "q"], ["y"], name="add")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    pairs, un = _plan(match_tensors(ref, var, tensor_map={"a": "q", "b": "q"}))
    assert ("a", "q", "recorded") in pairs and un["b"] == "'q' already pairs with 'a'"
    ref2 = _proto([helper.make_node("Relu", ["x"], ["r1"], name="r1"), helper.make_node("Relu", ["x"], ["r2"], name="r2"),
                   helper.make_node("Add", ["r1", "r2"], ["y"], name="add")], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    var2 = _proto([helper.make_node("Relu", ["x"], ["q"], name="vq"), helper.make_node("Add", ["q", "q"], ["y"], name="add")],
                  [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    pairs, un = _plan(match_tensors(ref2, var2))
    assert pairs == [("r1", "q", "structural"), ("y", "y", "exact")]
    assert un == {"r2": "no variant tensor has this name or this node's structure (fused or removed by the "
                        "recipe's pre-processing)"}


def test_a_fused_node_keeping_its_name_is_told_exactly():
    """Conv+BatchNormalization fused by pre-processing: the variant's Conv keeps the name "conv" but writes the
    BatchNormalization's tensor ``bn``, which the reference ``bn`` pairs with by name first."""
    w, s = _k("w", np.ones((2, 2, 1, 1))), [_k(n, np.ones(2)) for n in ("sc", "bb", "mean", "var")]
    ref = _proto([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                  helper.make_node("BatchNormalization", ["c", "sc", "bb", "mean", "var"], ["bn"], name="bnorm"),
                  helper.make_node("Relu", ["bn"], ["y"], name="relu")],
                 [("x", _F, ["N", 2, 3, 3])], [("y", _F, ["N", 2, 3, 3])], [w, *s])
    var = _proto([helper.make_node("Conv", ["x", "w"], ["bn"], name="conv"), helper.make_node("Relu", ["bn"], ["y"], name="relu")],
                 [("x", _F, ["N", 2, 3, 3])], [("y", _F, ["N", 2, 3, 3])], [w])
    pairs, un = _plan(match_tensors(ref, var))
    assert pairs == [("bn", "bn", "exact"), ("y", "y", "exact")]
    assert un == {"c": "the same-named variant node writes 'bn', which pairs with 'bn': this node was fused with a "
                       "later one (e.g. Conv+BatchNormalization by pre-processing)"}


@pytest.mark.parametrize("hops,paired", [(64, True), (65, False)])
def test_structure_looks_through_at_most_64_passthrough_nodes(hops, paired):
    """The variant's Relu reads m through a chain of Identity nodes: structure matching follows Cast/Q/DQ/Identity
    back to the value's origin for at most 64 hops (a bound against cycles in a broken graph)."""
    two = _k("two", 2.0)
    ref = _proto([helper.make_node("Mul", ["x", "two"], ["m"], name="mul"), helper.make_node("Relu", ["m"], ["y"], name="relu")],
                 [("x", _F, ["N", 8])], [("y", _F, ["N", 8])], [two])
    chain = [helper.make_node("Identity", [f"i{j}" if j else "m"], [f"i{j + 1}"], name=f"id{j}") for j in range(hops)]
    var = _proto([helper.make_node("Mul", ["x", "two"], ["m"], name="mul"), *chain,
                  helper.make_node("Relu", [f"i{hops}"], ["z"], name="v_relu")],
                 [("x", _F, ["N", 8])], [("z", _F, ["N", 8])], [two])
    pairs, _ = _plan(match_tensors(ref, var))
    assert (("y", "z", "structural") in pairs) is paired and ("m", "m", "exact") in pairs


def test_unnamed_nodes_are_labelled_by_op_and_index():
    ref = _proto([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
                  helper.make_node("Relu", ["b"], ["y"])], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    var = _proto([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Tanh", ["a"], ["c"]),
                  helper.make_node("Relu", ["c"], ["y"])], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    plan = match_tensors(ref, var)
    assert [(p.node, p.tensor) for p in plan.pairs] == [("Relu#0", "a"), ("Relu#2", "y")]
    assert [(u["onnx_node"], u["tensor"]) for u in plan.unmatched] == [("Sigmoid#1", "b")]


def test_expose_appends_once_and_keeps_declared_outputs():
    """expose() adds outputs after the model's own (once each, an unknown type left UNDEFINED so ONNX Runtime takes
    the real one, here int64); only=True keeps a declared output's type and shape."""
    import onnxruntime as ort

    from workbench.compare.layerwise import expose

    p = _proto([helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Shape", ["a"], ["s"], name="shape"),
                helper.make_node("Sigmoid", ["a"], ["y"], name="sig")], [("x", _F, ["N", 8])], [("y", _F, ["N", 8])])
    e = expose(p, ["a", "s", "a"], {"a": _F, "s": TensorProto.INT64})
    assert [o.name for o in e.graph.output] == ["y", "a", "s"]
    sess = ort.InferenceSession(e.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(-8, 8, dtype=np.float32).reshape(2, 8)
    y, a, s = sess.run(None, {"x": x})
    assert s.tolist() == [2, 8] and (a == np.maximum(x, 0)).all()
    # a type the caller does not give is declared UNDEFINED, not guessed (ONNX Runtime then refuses to load it)
    for e in (expose(p, ["s"]), expose(p, ["s"], only=True)):
        assert [o.name for o in e.graph.output][-1] == "s"
        assert e.graph.output[-1].type.tensor_type.elem_type == TensorProto.UNDEFINED
    only = expose(p, ["s", "y"], {"s": TensorProto.INT64}, only=True)
    assert [o.name for o in only.graph.output] == ["s", "y"]
    assert only.graph.output[1] == p.graph.output[0]  # type and shape (N, 8) as declared
    s2, y2 = ort.InferenceSession(only.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert s2.tolist() == [2, 8] and y2.shape == (2, 8)


def test_cut_model_keeps_the_sparse_initializers_it_needs():
    """A MatMul weight stored as a sparse initializer: the cut keeps it (and drops an unneeded one); ONNX Runtime
    runs the cut and gives x @ W."""
    import onnxruntime as ort

    from workbench.compare.layerwise import cut_model

    w = np.zeros((4, 3), np.float32)
    w[1, 2], w[3, 0] = 2.0, -1.0
    idx = np.flatnonzero(w)
    sw = helper.make_sparse_tensor(numpy_helper.from_array(w.ravel()[idx], "w"),
                                   numpy_helper.from_array(idx.astype(np.int64), "w_idx"), [4, 3])
    su = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(1, np.float32), "u"),
                                   numpy_helper.from_array(np.zeros(1, np.int64), "u_idx"), [3])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Add", ["m", "u"], ["y"], name="add")], "sp",
                          [helper.make_tensor_value_info("x", _F, ["N", 4])], [helper.make_tensor_value_info("y", _F, ["N", 3])],
                          sparse_initializer=[sw, su])
    p = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    cut = cut_model(p, ["m"], {"m": _F})
    assert [s.values.name for s in cut.graph.sparse_initializer] == ["w"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (m,) = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(m, x @ w)


def test_tidy_layout_of_a_debug_tensor_frame():
    """A frame in layerwise_debug_tensors' format (TensorRT's own tensors: ErrorAccumulator metrics, no noise_ratio /
    local_noise columns) melts into the same tidy layout with the metrics it has."""
    from workbench.compare.layerwise import layerwise_tidy
    from workbench.compare.metrics import ErrorAccumulator

    ref = np.linspace(-1, 1, 12, dtype=np.float32)
    acc = ErrorAccumulator(percentiles=False)
    acc.update(ref, ref + 0.5)
    res = acc.result()
    df = pd.DataFrame([{"variant": "v", "precision": "fp16", "backend": "tensorrt", "order": 0, "onnx_node": "n",
                        "op_type": "Relu", "tensor": "t", "match": "debug tensor", **res, "diverged": True}])
    tidy = layerwise_tidy(df)
    assert list(tidy.columns) == ["variant", "onnx_node", "tensor", "metric", "value"]
    assert list(tidy.metric) == ["max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "nan_count", "inf_count"]
    assert tidy.set_index("metric").loc["max_abs", "value"] == pytest.approx(0.5)
    assert tidy.set_index("metric").loc["mean_abs", "value"] == pytest.approx(0.5)


def test_a_filtered_layerwise_frame_keeps_its_precision_for_the_unmatched_frame():
    """df[df.diverged] of a run where nothing diverged has no rows; its unmatched tensors still name the variant's
    precision (from the frame's attrs, which pandas keeps through the filter)."""
    from workbench.compare.layerwise import unmatched_frame

    ref, var = _runtime_model(False), _runtime_model(True)
    df = layerwise(ref, var, data=[{"x": np.ones((1, 3, 4), np.float32)}], metric="max_abs", threshold=10.0,
                   progress=False)
    assert df.attrs["precision"] == "custom" and not df.diverged.any()
    un = unmatched_frame(df[df.diverged])
    assert un[["variant", "precision", "tensor"]].values.tolist() == [["rt-var-custom", "custom", "r"],
                                                                      ["rt-var-custom", "custom", "s"]]
