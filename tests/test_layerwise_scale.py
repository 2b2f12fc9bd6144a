"""Layerwise at scale: tensor matching that survives renames/reshapes/transposes/fusions (never fatal),
the memory budget (sub-batches and grouped passes give the metrics of one pass), bisection."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.compare.layerwise import cut_model, layerwise, match_tensors, parse_bytes
from workbench.errors import UsageError
from workbench.precision import make_variant

METRIC_COLS = ["max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db"]


def _model(nodes, inits, name="m", out_shape=("N", 3, 1)):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
                          initializer=[numpy_helper.from_array(v if isinstance(v, np.ndarray) and v.dtype == np.int64
                                                               else np.asarray(v, np.float32), k)
                                       for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return wb.Model(m, name=name)


def reference():
    """x → Mul(2) m1 → Mul(3) m2 → Relu r → Add(b) a → ReduceMean(axis 2) rm → Sigmoid y."""
    return _model([helper.make_node("Mul", ["x", "two"], ["m1"], name="mul1"),
                   helper.make_node("Mul", ["m1", "three"], ["m2"], name="mul2"),
                   helper.make_node("Relu", ["m2"], ["r"], name="relu"),
                   helper.make_node("Add", ["r", "b"], ["a"], name="add"),
                   helper.make_node("ReduceMean", ["a"], ["rm"], name="mean", axes=[2], keepdims=1),
                   helper.make_node("Sigmoid", ["rm"], ["y"], name="sig")],
                  {"two": 2.0, "three": 3.0, "b": np.full((3, 4), 0.25)}, name="ref")


def renamed_variant(bias=0.25):
    """The reference with every node and intermediate tensor renamed (as ORT's optimizer does), the
    two Muls folded into one (Conv+BN style: the first product has no counterpart) and a Cast pair
    inserted after the Relu (a recipe boundary)."""
    return _model([helper.make_node("Mul", ["x", "six"], ["m2"], name="fused_mul"),
                   helper.make_node("Relu", ["m2"], ["t_relu"], name="n_a"),
                   helper.make_node("Cast", ["t_relu"], ["t_half"], name="c1", to=TensorProto.FLOAT16),
                   helper.make_node("Cast", ["t_half"], ["t_back"], name="c2", to=TensorProto.FLOAT),
                   helper.make_node("Add", ["t_back", "b"], ["t_add"], name="n_b"),
                   helper.make_node("ReduceMean", ["t_add"], ["t_mean"], name="n_c", axes=[2], keepdims=1),
                   helper.make_node("Sigmoid", ["t_mean"], ["y"], name="n_d")],
                  {"six": 6.0, "b": np.full((3, 4), bias)}, name="renamed")


def transposed_variant():
    """Pre-processing moved a Transpose through the ReduceMean: a tensor named ``rm`` exists but holds
    the (N, 1, 3) layout; the Relu runs on a flattened (N, 12) tensor still named ``r``."""
    return _model([helper.make_node("Mul", ["x", "two"], ["m1"], name="mul1"),
                   helper.make_node("Mul", ["m1", "three"], ["m2"], name="mul2"),
                   helper.make_node("Reshape", ["m2", "flat"], ["m2f"], name="flatten"),
                   helper.make_node("Relu", ["m2f"], ["r"], name="relu"),
                   helper.make_node("Reshape", ["r", "back"], ["r1"], name="unflatten"),
                   helper.make_node("Add", ["r1", "b"], ["a"], name="add"),
                   helper.make_node("Transpose", ["a"], ["at"], name="tr", perm=[0, 2, 1]),
                   helper.make_node("ReduceMean", ["at"], ["rm"], name="mean", axes=[1], keepdims=1),
                   helper.make_node("Transpose", ["rm"], ["rt"], name="tr_back", perm=[0, 2, 1]),
                   helper.make_node("Sigmoid", ["rt"], ["y"], name="sig")],
                  {"two": 2.0, "three": 3.0, "b": np.full((3, 4), 0.25), "flat": np.array([0, 12], np.int64),
                   "back": np.array([0, 3, 4], np.int64)}, name="transposed")


def runtime_reshaped_variant():
    """``r`` computed with a Reshape whose target shape only exists at run time (N, 4, 3): shape
    inference cannot tell, so the mismatch shows up on the first batch."""
    def const(name, v):
        return helper.make_node("Constant", [], [name], name=f"k_{name}",
                                value=numpy_helper.from_array(np.asarray(v, np.int64), name))
    return _model([helper.make_node("Mul", ["x", "two"], ["m1"], name="mul1"),
                   helper.make_node("Mul", ["m1", "three"], ["m2"], name="mul2"),
                   helper.make_node("Relu", ["m2"], ["r0"], name="relu"),
                   helper.make_node("Shape", ["x"], ["shp"], name="shape"),
                   const("i0", [0]), const("i1", [1]), const("i2", [2]), const("i3", [3]),
                   helper.make_node("Slice", ["shp", "i0", "i1"], ["d0"], name="s0"),
                   helper.make_node("Slice", ["shp", "i2", "i3"], ["d2"], name="s2"),
                   helper.make_node("Slice", ["shp", "i1", "i2"], ["d1"], name="s1"),
                   helper.make_node("Concat", ["d0", "d2", "d1"], ["tshape"], name="cat", axis=0),
                   helper.make_node("Reshape", ["r0", "tshape"], ["r"], name="relu_swap"),
                   helper.make_node("Reshape", ["r", "shp"], ["r1"], name="relu_back"),
                   helper.make_node("Add", ["r1", "b"], ["a"], name="add"),
                   helper.make_node("ReduceMean", ["a"], ["rm"], name="mean", axes=[2], keepdims=1),
                   helper.make_node("Sigmoid", ["rm"], ["y"], name="sig")],
                  {"two": 2.0, "three": 3.0, "b": np.full((3, 4), 0.25)}, name="runtime")


@pytest.fixture
def feeds():
    return {"x": np.random.default_rng(0).standard_normal((8, 3, 4)).astype(np.float32)}


def test_renamed_fused_and_cast_tensors_are_matched_structurally(feeds):
    df = layerwise(reference(), renamed_variant(), feeds=feeds, progress=False)
    got = dict(zip(df.tensor, zip(df.variant_tensor, df.match)))
    assert got["m2"] == ("m2", "exact")  # the fused Mul wrote the second product's name
    assert got["r"] == ("t_relu", "structural")
    assert got["a"] == ("t_add", "structural")  # its input is t_back, found by looking through the Casts
    assert got["rm"] == ("t_mean", "structural")
    assert got["y"] == ("y", "exact")
    un = {u["tensor"]: u["reason"] for u in df.attrs["unmatched"]}
    assert set(un) == {"m1"} and "fused or removed" in un["m1"]  # not paired with the fused product
    assert df.attrs["counts"] == {"compared": 5, "unmatched": 1, "skipped": 0}
    assert (df.cosine > 0.999999).all() and df.attrs["first_divergent"] is None


def test_structural_match_finds_a_planted_change(feeds):
    df = layerwise(reference(), renamed_variant(bias=0.5), feeds=feeds, progress=False, metric="max_abs",
                   threshold=1e-3)
    assert df.attrs["first_divergent"] == "add"  # the renamed Add, paired by structure
    assert df.set_index("tensor").loc["r", "max_abs"] == 0.0


def test_transposed_and_reshaped_tensors_are_unmatched_not_fatal(feeds):
    df = layerwise(reference(), transposed_variant(), feeds=feeds, progress=False)
    un = {u["tensor"]: u["reason"] for u in df.attrs["unmatched"]}
    assert set(un) == {"r", "rm"}
    assert "(8, 3, 1) in the reference but (8, 1, 3)" in un["rm"]
    assert "(8, 3, 4) in the reference but (8, 12)" in un["r"]
    assert list(df.tensor) == ["m1", "m2", "a", "y"]
    assert df.attrs["counts"]["compared"] == 4 and df.attrs["counts"]["unmatched"] == 2
    assert (df.max_abs < 1e-6).all()


def test_shape_mismatch_seen_only_at_run_time_is_unmatched(feeds):
    ref, var = reference(), runtime_reshaped_variant()
    plan = match_tensors(ref.proto_with_data(), var.proto_with_data())
    assert "r" in [p.tensor for p in plan.pairs]  # shape inference cannot tell (N, 4, 3) from (N, 3, 4)
    df = layerwise(ref, var, feeds=feeds, progress=False)
    un = {u["tensor"]: u["reason"] for u in df.attrs["unmatched"]}
    assert set(un) == {"r"} and "(8, 3, 4) in the reference but (8, 4, 3) in the variant ('r')" in un["r"]
    assert "r" not in set(df.tensor) and {"a", "rm", "y"} <= set(df.tensor)


def test_missing_tensor_recorded_map_and_skips(feeds):
    # a tensor_map (what a recipe records) pairs a tensor no rule would find
    var = renamed_variant()
    df = layerwise(reference(), var, feeds=feeds, progress=False, tensor_map={"r": "t_back"})
    assert df.set_index("tensor").loc["r", "match"] == "recorded"
    # a map naming a tensor the variant lacks is a reason, not a crash
    df = layerwise(reference(), var, feeds=feeds, progress=False, tensor_map={"r": "nope"})
    assert df.set_index("tensor").loc["r", "match"] == "structural"
    # a variant with almost nothing in common: the rest is listed, never fatal
    other = _model([helper.make_node("Neg", ["x"], ["q"], name="q"), helper.make_node(
        "ReduceMax", ["q"], ["y"], name="w", axes=[2], keepdims=1)], {}, name="other")
    df = layerwise(reference(), other, feeds=feeds, progress=False)
    assert list(df.tensor) == ["y"] and df.attrs["counts"]["unmatched"] == 5


@pytest.fixture
def digits(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    with np.load(sample("digits_test.npz")) as z:
        data = [{"image": z["image"][i:i + 40].astype(np.float32)} for i in (0, 40, 80)]
    var = make_variant(model, "int8", calib=sample("digits_calib.npz"), progress=False)
    return model, var, data


def _metrics_equal(a, b, rtol=1e-9):
    assert list(a.tensor) == list(b.tensor)
    for c in METRIC_COLS:
        tol = rtol if c != "max_rel" or rtol <= 1e-9 else 100 * rtol  # max |d|/|ref| amplifies an ulp
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=tol, atol=0, err_msg=c)
    assert list(a.diverged) == list(b.diverged)


def test_memory_budget_sub_batches_and_grouped_passes_match_one_pass(digits):
    model, var, data = digits
    one = layerwise(model, var, data=data, memory_budget=None, progress=False)
    assert one.attrs["passes"] == 1 and one.attrs["runs"] == 3 and one.attrs["samples"] == 120
    per_run = one.attrs["estimated_bytes"]  # 40 samples, every tensor of both graphs
    assert per_run > 0
    # a budget under one batch but over one sample: fewer samples per run, still one pass
    sub = layerwise(model, var, data=data, memory_budget=per_run // 4, progress=False)
    assert sub.attrs["passes"] == 1 and sub.attrs["run_batch"] < 40 and sub.attrs["runs"] > 3
    assert sub.attrs["estimated_bytes"] <= per_run // 4
    # ORT's float32 kernels may differ by an ulp between batch sizes; the sums themselves are exact
    _metrics_equal(one, sub, rtol=1e-5)
    # a budget under one sample's tensors: groups of tensors over several passes
    grouped = layerwise(model, var, data=data, memory_budget=per_run // 200, progress=False)
    assert grouped.attrs["passes"] > 2 and grouped.attrs["run_batch"] == 1
    _metrics_equal(one, grouped, rtol=1e-5)
    assert one.attrs["first_divergent"] == grouped.attrs["first_divergent"]
    assert grouped.attrs["peak_rss_bytes"] > 0


def test_compare_budget_uses_fewer_samples_and_says_why(digits):
    """What a comparison costs grows with the compared bytes: over ``compare_budget`` the first samples
    that fit are compared (at least one), and the result says how many of how many and why."""
    model, var, data = digits
    full = layerwise(model, var, data=data, memory_budget=None, progress=False)
    per_sample = full.attrs["estimated_bytes"] / 40  # one run of 40 samples, every tensor of both graphs
    cut = layerwise(model, var, data=data, memory_budget=None, compare_budget=int(per_sample * 50.5),
                    progress=False)
    assert cut.attrs["samples"] == 50 and cut.attrs["samples_given"] == 120 and cut.attrs["batches"] == 2
    assert cut.attrs["samples_reason"].startswith("50 of 120 samples")
    # the same comparison as handing over those 50 samples
    first50 = [data[0], {"image": data[1]["image"][:10]}]
    _metrics_equal(cut, layerwise(model, var, data=first50, memory_budget=None, progress=False), rtol=1e-5)
    one = layerwise(model, var, data=data, compare_budget=1, progress=False)
    assert one.attrs["samples"] == 1 and "1 of 120 samples" in one.attrs["samples_reason"]
    roomy = layerwise(model, var, data=data, compare_budget="100GB", progress=False)
    assert roomy.attrs["samples"] == 120 and roomy.attrs["samples_reason"] == ""


def test_fixed_batch_model_uses_grouped_passes(sample):
    """A model whose batch is fixed cannot run fewer samples: only tensor groups keep the budget."""
    model = wb.load(sample("digits_cnn.onnx"))
    p = model.proto_with_data()
    p.graph.input[0].type.tensor_type.shape.dim[0].Clear()
    p.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 16
    fixed = model.derive(p, name="digits16")
    var = make_variant(fixed, "fp16", progress=False)
    with np.load(sample("digits_test.npz")) as z:
        data = [{"image": z["image"][i:i + 16].astype(np.float32)} for i in (0, 16)]
    one = layerwise(fixed, var, data=data, memory_budget=None, progress=False)
    grouped = layerwise(fixed, var, data=data, memory_budget=one.attrs["estimated_bytes"] // 3, progress=False)
    assert grouped.attrs["passes"] >= 3 and grouped.attrs["run_batch"] == 16
    _metrics_equal(one, grouped)  # same runs, tensors split over passes: identical sums


def test_parse_bytes():
    assert parse_bytes("2GB") == 2 * 1024 ** 3 and parse_bytes("512m") == 512 * 1024 ** 2
    assert parse_bytes(1000) == 1000 and parse_bytes("1.5 GiB") == int(1.5 * 1024 ** 3)
    for bad in ("-1GB", "0", "lots", "2TBB"):
        with pytest.raises(UsageError):
            parse_bytes(bad)


def test_cut_model_keeps_only_what_the_tensor_needs(feeds):
    import onnxruntime as ort

    ref = reference().proto_with_data()
    cut = cut_model(ref, ["r"])
    assert [n.name for n in cut.graph.node] == ["mul1", "mul2", "relu"]
    assert {i.name for i in cut.graph.initializer} == {"two", "three"}
    assert [o.name for o in cut.graph.output] == ["r"]
    out = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(out, np.maximum(feeds["x"] * 6, 0), rtol=1e-6)


def planted_chain(n=40, plant=None, delta=0.05):
    """x → n × (Mul by a constant, Tanh) → y; ``plant``: index of the Mul whose constant is off by ``delta``
    (a divergence that persists to the output)."""
    nodes, inits, prev = [], {}, "x"
    for k in range(n):
        c = 0.9 + 0.01 * (k % 7) + (delta if k == plant else 0.0)
        inits[f"c{k}"] = np.full((3, 4), c)
        nodes.append(helper.make_node("Mul", [prev, f"c{k}"], [f"m{k}"], name=f"mul{k}"))
        out = "y" if k == n - 1 else f"t{k}"
        nodes.append(helper.make_node("Tanh", [f"m{k}"], [out], name=f"tanh{k}"))
        prev = out
    return _model(nodes, inits, name="chain" if plant is None else f"chain-planted{plant}", out_shape=("N", 3, 4))


@pytest.mark.parametrize("plant", [0, 23, 39])
def test_bisection_agrees_with_the_full_scan_on_a_planted_divergence(plant):
    from workbench.compare.layerwise import first_divergence

    ref, var = planted_chain(), planted_chain(plant=plant)
    data = [{"x": np.random.default_rng(i).standard_normal((16, 3, 4)).astype(np.float32)} for i in range(3)]
    full = layerwise(ref, var, data=data, metric="max_abs", threshold=1e-4, progress=False)
    assert full.attrs["first_divergent"] == f"mul{plant}"
    bis = first_divergence(ref, var, data=data, metric="max_abs", threshold=1e-4, progress=False)
    assert bis.first_divergent == full.attrs["first_divergent"] and bis.tensor == f"m{plant}"
    n = bis.candidates
    assert n == len(full) == 80
    assert bis.runs <= int(np.ceil(np.log2(n))) + 1  # 8 cut-graph runs instead of one run exposing 80 tensors
    assert bis.row["max_abs"] == pytest.approx(full.set_index("tensor").loc[f"m{plant}", "max_abs"], rel=1e-6)
    assert bis.samples == 48 and bis.to_json()["probes"][0]["tensor"] == "y"


def test_bisection_without_divergence_and_on_int8(sample):
    from workbench.compare.layerwise import first_divergence

    ref = planted_chain()
    data = [{"x": np.ones((2, 3, 4), np.float32)}]
    bis = first_divergence(ref, planted_chain(), data=data, metric="max_abs", threshold=1e-4, progress=False)
    assert bis.first_divergent is None and bis.runs == 1  # the last tensor agrees: one run says so
    # a real int8 variant: the bisection lands on a tensor the full scan also flags as diverged
    model = wb.load(sample("digits_cnn.onnx"))
    var = make_variant(model, "int8", calib=sample("digits_calib.npz"), progress=False)
    with np.load(sample("digits_test.npz")) as z:
        feeds = {"image": z["image"][:64].astype(np.float32)}
    full = layerwise(model, var, feeds=feeds, threshold=0.99999, progress=False)
    bis = first_divergence(model, var, feeds=feeds, threshold=0.99999, progress=False)
    assert bis.first_divergent in set(full.loc[full.diverged, "onnx_node"])
    assert bis.runs <= int(np.ceil(np.log2(bis.candidates))) + 1


def test_report_sample_budget_timings_and_no_second_reference_build(sample, tmp_path, monkeypatch):
    """The report's sample budget is applied exactly and stated; the fp32 ORT engine of the build stage
    is the accuracy reference (building it again would fail here)."""
    import workbench.builds as builds
    from workbench.commands.report import make_report, run_facts

    def no_rebuild(*a, **k):
        raise AssertionError("the fp32 reference was built a second time")

    monkeypatch.setattr(builds, "build_engine", no_rebuild)  # build_variants builds through backend.build
    fr, out, rec, _ = make_report(sample("digits_cnn.onnx"), ["fp32", "fp16"], ["onnxruntime"],
                                  data=sample("digits_test.npz"), labels="label", calib=None, shapes=None,
                                  out=tmp_path / "r.html", iterations=50, warmup=10, layer_iterations=20, limit=40,
                                  progress=False, layerwise_limit=5, time_budget_s=0.05, latency_samples=3)
    assert fr.config["accuracy_samples"] == 40 and fr.config["layerwise_samples"] == 5
    assert fr.comparisons["onnxruntime"].samples == 40
    assert set(fr.timings) >= {"inspect", "build", "latency", "layers", "accuracy", "layerwise"}
    assert (fr.latency.iterations <= 50).all() and (fr.latency.batch == 3).all()
    facts = run_facts(fr)
    assert "accuracy 40 (limit 40)" in facts and "layerwise 5" in facts and "runs of 3 samples" in facts
    assert "stage seconds" in facts
    text = out.read_text()
    assert "accuracy on 40 samples (sample budget 40" in text and "per-node error on 5 samples" in text


def test_fused_node_keeping_its_name_does_not_pair_the_pre_fusion_tensor(feeds):
    """ORT's Conv+BN fusion keeps the Conv's node name but writes the BN's tensor: the Conv's own output
    must stay unmatched (comparing it with the fused result would report a false divergence)."""
    var = renamed_variant()
    p = var.proto_with_data()
    p.graph.node[0].name = "mul1"  # the fused Mul keeps the first Mul's name, as ORT's fusion does
    df = layerwise(reference(), var.derive(p), feeds=feeds, progress=False)
    un = {u["tensor"]: u["reason"] for u in df.attrs["unmatched"]}
    assert set(un) == {"m1"} and "fused with a later one" in un["m1"] and "'m2'" in un["m1"]
    assert df.attrs["first_divergent"] is None


def test_uint8_variant_whose_quantizer_dropped_the_relus(sample):
    """ORT's quantizer for ORT CPU (uint8 asymmetric activations) removes a Relu before its Q (the Q clips)
    and renames the Conv's output to the Relu's tensor: that name then holds pre-Relu values. The Relu is
    compared at its DequantizeLinear output instead, and the Conv at its own (renamed) output."""
    model = wb.load(sample("digits_cnn.onnx"))
    var = make_variant(model, "int8", calib=sample("digits_calib.npz"), target="onnxruntime-cpu", progress=False)
    relus = [n.name for n in model.graph.node if n.op_type == "Relu"]
    assert not any(n.op_type == "Relu" for n in var.model.graph.node)  # the premise: the quantizer dropped them
    with np.load(sample("digits_test.npz")) as z:
        feeds = {"image": z["image"][:64].astype(np.float32)}
    df = layerwise(model, var, feeds=feeds, progress=False).set_index("onnx_node")
    assert df.attrs["counts"]["unmatched"] == 0 and df.attrs["first_divergent"] is None
    assert (df.loc[relus, "match"] == "dequantized").all()
    assert (df.cosine > 0.999).all()  # a pre-Relu tensor paired with a Relu output would give ~0.5


def test_reference_engine_among_the_engines_runs_once_per_batch(sample):
    """The flow's fp32 build is both the accuracy reference and a compared engine: it runs once per
    batch, and it is compared with itself exactly (no second run that could only agree)."""
    from workbench.builds import build_variants
    from workbench.compare import compare_engines

    bs = build_variants(sample("digits_cnn.onnx"), "fp32,fp16", progress=False)
    ref, fp16 = bs["fp32"].engine, bs["fp16"].engine
    calls = {"ref": 0}
    real = ref.run

    def counted(feeds):
        calls["ref"] += 1
        return real(feeds)

    ref.run = counted
    with np.load(sample("digits_test.npz")) as z:
        data = [{"image": z["image"][i:i + 8].astype(np.float32)} for i in range(0, 32, 8)]
    cmp = compare_engines(ref, [ref, fp16], data, progress=False)
    assert calls["ref"] == 4  # one run per batch, not two
    s = cmp.summary().set_index("variant")
    assert s.loc["digits_cnn-fp32", "cosine_min"] == 1.0 and s.loc["digits_cnn-fp32", "max_abs"] == 0.0
    assert s.loc["digits_cnn-fp16", "max_abs"] > 0.0
