"""Output comparison: metric formulas, compare_outputs on real models and real labels, bad input, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.compare import compare_engines, compare_outputs, metrics
from workbench.errors import DataError
from workbench.variant import Variant

N = 200  # digits samples used by these tests


# ---------------------------------------------------------------------------------------------- metrics
@pytest.fixture
def pair():
    rng = np.random.default_rng(42)
    ref = rng.standard_normal((7, 13)).astype(np.float32)
    x = (ref + 0.05 * rng.standard_normal(ref.shape)).astype(np.float16)
    return ref, x


def test_metrics_match_independent_formulas(pair):
    from scipy.spatial.distance import cosine as scipy_cosine_distance

    ref, x = pair
    r, v = ref.astype(np.float64).ravel(), x.astype(np.float64).ravel()
    d = v - r
    assert metrics.max_abs_error(ref, x) == pytest.approx(np.abs(d).max(), rel=1e-12)
    assert metrics.mean_abs_error(ref, x) == pytest.approx(np.mean(np.abs(d)), rel=1e-12)
    assert metrics.max_rel_error(ref, x) == pytest.approx(np.max(np.abs(d) / np.abs(r)), rel=1e-12)
    assert metrics.rmse(ref, x) == pytest.approx(np.sqrt(np.mean(d ** 2)), rel=1e-12)
    assert metrics.cosine_similarity(ref, x) == pytest.approx(1 - scipy_cosine_distance(r, v), abs=1e-12)
    assert metrics.snr_db(ref, x) == pytest.approx(10 * np.log10(np.sum(r ** 2) / np.sum(d ** 2)), rel=1e-12)
    assert metrics.allclose(ref, x, 0.5, 0.0) == bool(np.allclose(v, r, atol=0.5, rtol=0))
    assert metrics.allclose(ref, x, 1e-4, 0.0) == bool(np.allclose(v, r, atol=1e-4, rtol=0))


def test_accumulator_over_batches_equals_whole_array(pair):
    ref, x = pair
    acc = metrics.ErrorAccumulator(atol=1e-2, rtol=1e-2)
    for i in range(0, len(ref), 3):  # uneven batches
        acc.update(ref[i:i + 3], x[i:i + 3])
    whole = metrics.output_metrics(ref, x, atol=1e-2, rtol=1e-2)
    got = acc.result()
    for k in ("max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db"):
        assert got[k] == pytest.approx(whole[k], rel=1e-9), k
    # not the mean of per-batch cosines: scale one batch up so the two would differ
    ref2, x2 = ref.copy(), x.astype(np.float32).copy()
    ref2[:3] *= 100
    x2[:3] = x2[:3] * 100 + 1.0
    acc2 = metrics.ErrorAccumulator()
    per_batch = []
    for i in range(0, len(ref2), 3):
        acc2.update(ref2[i:i + 3], x2[i:i + 3])
        per_batch.append(metrics.cosine_similarity(ref2[i:i + 3], x2[i:i + 3]))
    assert acc2.result()["cosine"] == pytest.approx(metrics.cosine_similarity(ref2, x2), rel=1e-12)
    assert abs(acc2.result()["cosine"] - np.mean(per_batch)) > 1e-6


def test_metric_edge_cases():
    z = np.zeros(5)
    assert metrics.cosine_similarity(z, z) == 1.0
    assert metrics.cosine_similarity(z, np.ones(5)) == 0.0
    assert metrics.snr_db(np.ones(5), np.ones(5)) == math.inf
    assert metrics.snr_db(z, np.ones(5)) == -math.inf
    bad = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    m = metrics.output_metrics(np.arange(5.0), bad)
    assert (m["nan_count"], m["inf_count"], m["passed"]) == (1, 2, False)
    assert m["max_abs"] == pytest.approx(2.0)  # finite positions 0 and 4: |1-0|, |2-4|
    assert metrics.topk_agreement(np.array([[3, 2, 1.0]]), np.array([[3, 1, 2.0]]), k=2) == pytest.approx(0.5)
    assert metrics.top1_accuracy(np.array([[0, 1.0], [1.0, 0]]), np.array([1, 1])) == 0.5
    assert metrics.json_number(math.inf) == "inf" and metrics.json_number(np.float32(0.5)) == 0.5


# ---------------------------------------------------------------------------------------------- models
def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9  # ONNX Runtime 1.31 reads IR <= 13; onnx 1.23 writes 14 by default
    onnx.checker.check_model(m, full_check=True)
    return wb.load(m.SerializeToString(), name="tiny")


def _log_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    return _model([helper.make_node("Log", ["x"], ["y"], name="log")], [x], [y])


def test_identical_variant_is_exact(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    data = sample("digits_test.npz")
    cmp = compare_outputs(model, ["fp32"], data=data, labels="label", limit=N, progress=False)
    name = cmp.variants[0]
    assert cmp.value(name, "max_abs") == 0.0
    assert cmp.value(name, "cosine") == 1.0
    assert cmp.value(name, "snr_db") == math.inf
    assert cmp.value(name, "passed") == True  # noqa: E712
    assert cmp.value(name, "top1_agreement") == 1.0
    assert cmp.samples == N
    s = cmp.summary()
    assert list(s.variant) == [cmp.reference, name] and bool(s.passed.iloc[1])
    js = cmp.to_json()
    assert js["variants"][name]["outputs"]["logits"]["snr_db"] == "inf"
    json.dumps(js, allow_nan=False)  # strict JSON


def test_nan_injection_fails():
    model = _log_model()
    x = np.array([[1.0, -2.0, 3.0, 0.5], [-1.0, 2.0, 4.0, 8.0]], dtype=np.float32)
    cmp = compare_outputs(model, ["fp32"], data=[{"x": x}], progress=False)
    name = cmp.variants[0]
    with np.errstate(invalid="ignore"):
        expected_nans = int(np.isnan(np.log(x)).sum())
    assert cmp.value(name, "nan_count") == expected_nans > 0
    assert cmp.value(name, "passed") == False  # noqa: E712
    assert cmp.summary().passed.iloc[1] == False  # noqa: E712


def _ort_top1(model_proto: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> float:
    sess = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": images})[0]
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def test_int8_digits_top1_matches_direct_ort_run(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    data, calib = sample("digits_test.npz"), sample("digits_calib.npz")
    cmp = compare_outputs(model, "fp16,int8", data=data, labels="label", calib=calib, limit=N, progress=False)
    with np.load(data) as z:
        images, labels = z["image"][:N].astype(np.float32), z["label"][:N]
    assert cmp.value(cmp.reference, "top1") == pytest.approx(_ort_top1(model.proto_with_data(), images, labels))
    by_prec = {v.precision: n for n, v in cmp.built.items()}
    assert set(by_prec) == {"fp16", "int8"}
    for prec, name in by_prec.items():
        direct = _ort_top1(cmp.built[name].model.proto_with_data(), images, labels)
        assert cmp.value(name, "top1") == pytest.approx(direct), prec
    int8 = by_prec["int8"]
    assert 0.5 < cmp.value(int8, "cosine") < 1.0
    assert 0 < cmp.value(int8, "topk_agreement") <= 1.0
    s = cmp.summary().set_index("precision")
    delta = 100 * (cmp.value(int8, "top1") - cmp.value(cmp.reference, "top1"))
    assert s.loc["int8", "top1_delta"] == pytest.approx(delta)


def test_missing_label_key_is_data_error(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    with pytest.raises(DataError, match="label key 'target'"):
        compare_outputs(model, ["fp32"], data=sample("digits_test.npz"), labels="target", progress=False)


def test_wrong_input_names_are_data_error(sample, tmp_path):
    model = wb.load(sample("digits_cnn.onnx"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, img=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="image"):
        compare_outputs(model, ["fp32"], data=bad, progress=False)
    with pytest.raises(DataError, match="image"):
        compare_outputs(model, ["fp32"], data=[{"img": np.zeros((4, 1, 8, 8), np.float32)}], progress=False)


def test_output_shape_mismatch_is_data_error(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    p = model.proto_with_data()
    out = p.graph.output[0].name
    # the modified variant returns only the first 5 logits under the same output name
    for n in p.graph.node:
        n.output[:] = [f"{o}_full" if o == out else o for o in n.output]
    p.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
                                (("s0", [0]), ("s1", [5]), ("ax", [1]))])
    p.graph.node.append(helper.make_node("Slice", [f"{out}_full", "s0", "s1", "ax"], [out], name="cut"))
    del p.graph.output[0].type.tensor_type.shape.dim[:]
    cut = Variant(model=model.derive(p, name="cut"), precision="fp32", recipe={"tool": "test"}, name="cut")
    backend = wb.get_backend("onnxruntime")
    ref = backend.build(Variant.of(model))
    with np.load(sample("digits_test.npz")) as z:
        feeds = {"image": z["image"][:8].astype(np.float32)}
    with pytest.raises(DataError, match="shape"):
        compare_engines(ref, [backend.build(cut)], [feeds], progress=False)
    with pytest.raises(DataError, match="shape"):
        compare_outputs(model, [cut], data=[feeds], progress=False)


def test_synthetic_fallback_and_bad_precision(light):
    model = wb.load(light("squeezenet"))
    cmp = compare_outputs(model, ["fp16"], progress=False)
    assert cmp.samples == 1 and cmp.label_output is None
    assert 0.9 < cmp.value(cmp.variants[0], "cosine") <= 1.0
    with pytest.raises(wb.UsageError):
        compare_outputs(model, ["int4"], progress=False)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_compare_json(sample, capsys):
    from workbench.cli import main

    model, data, calib = sample("digits_cnn.onnx"), sample("digits_test.npz"), sample("digits_calib.npz")
    rc = main(["compare", str(model), "--precision", "fp16,int8", "--data", str(data), "--labels", "label",
               "--calib", str(calib), "--limit", "100", "--layerwise", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    js = json.loads(out)
    variants = js["variants"]
    assert js["samples"] == 100
    low = [v for v in variants.values() if v["precision"] in ("fp16", "int8")]
    assert len(low) == 2
    for v in low:
        m = v["outputs"]["logits"]
        assert set(m) == set(metrics.METRICS) | set(metrics.EXTRA_METRICS)
        assert 0 <= v["top1"] <= 1 and 0 <= v["topk_agreement"] <= 1
    lw = js["layerwise"]
    assert len(lw) == 2
    for sec in lw.values():
        names = [r["onnx_node"] for r in sec["nodes"]]
        assert sec["first_divergent"] is None or sec["first_divergent"] in names
        assert {"onnx_node", "tensor", "cosine", "max_abs", "first_divergent"} <= set(sec["nodes"][0])


def test_cli_bad_label_key_exit_2(sample, capsys):
    from workbench.cli import main

    rc = main(["compare", str(sample("digits_cnn.onnx")), "--precision", "fp16",
               "--data", str(sample("digits_test.npz")), "--labels", "nope"])
    assert rc == 2
    assert "label key 'nope'" in capsys.readouterr().err
