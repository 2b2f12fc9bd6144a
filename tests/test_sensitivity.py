"""Sensitivity → mixed precision on the digits CNN (INT8, real data) and on light ResNet-50 (FP16)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.compare import compare_outputs
from workbench.compare.sensitivity import Target, attribute_noise, lowered_nodes, propose_mixed_precision
from workbench.data import synthetic_inputs
from workbench.errors import UsageError
from workbench.precision import make_variant

N = 200


def test_target_parsing():
    t = Target.parse("cosine >= 0.999")
    assert (t.metric, t.op, t.value) == ("cosine", ">=", 0.999)
    assert t.met(0.9995) and not t.met(0.998) and not t.met(float("nan"))
    assert Target.parse({"metric": "top1_drop", "op": "<=", "value": 0.5}).met(0.5)
    for bad in ("cosine=0.9", "psnr>=3", "cosine>=x"):
        with pytest.raises(UsageError):
            Target.parse(bad)


def test_digits_int8_stricter_target_is_met_by_keeping_nodes(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    data, calib = sample("digits_test.npz"), sample("digits_calib.npz")
    full = compare_outputs(model, ["int8"], data=data, labels="label", calib=calib, limit=N, progress=False)
    base_snr = float(full.value(full.variants[0], "snr_db"))
    target = f"snr_db>={base_snr + 3:.3f}"  # stricter than the full-int8 result
    with np.load(data) as z:
        arrays = {"image": z["image"][:N], "label": z["label"][:N]}
    res = propose_mixed_precision(model, "int8", target=target, data=arrays_npz(arrays, sample), labels="label",
                                  calib=calib, strategy="bisect", max_steps=4, layerwise_limit=64,
                                  latency_iterations=20, progress=False)
    assert res.baseline_value == pytest.approx(base_snr, abs=1e-6)
    assert not res.steps.met.iloc[0] and res.met
    assert res.keep_nodes and set(res.keep_nodes) <= set(res.candidates)
    conv_gemm = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert set(res.candidates) == conv_gemm  # int8 lowers exactly the weighted ops
    assert res.variant.recipe["keep_nodes"] == res.keep_nodes
    # verify independently: re-measure the returned variant
    again = compare_outputs(model, [res.variant], data=data, labels="label", limit=N, progress=False)
    snr = float(again.value(again.variants[0], "snr_db"))
    assert snr >= base_snr + 3 and snr == pytest.approx(res.verified_value, rel=1e-9)
    lat = res.latency.set_index("role")
    assert list(lat.index) == ["fp32", "low", "mixed"] and (lat.p50_ms > 0).all()
    assert res.speed_cost == pytest.approx(lat.loc["mixed", "p50_ms"] / lat.loc["low", "p50_ms"])
    js = res.to_json()
    assert js["met"] is True and js["keep_nodes"] == res.keep_nodes


def arrays_npz(arrays, sample):
    """The first N test samples as their own .npz next to the copied samples."""
    path = sample("digits_test.npz").parent / "digits_first.npz"
    np.savez(path, **arrays)
    return path


def test_greedy_reranks_and_stops_when_met(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    data, calib = sample("digits_test.npz"), sample("digits_calib.npz")
    res = propose_mixed_precision(model, "int8", target="snr_db>=37", data=data, calib=calib, strategy="greedy",
                                  max_steps=3, search_limit=N, layerwise_limit=64, latency=False, progress=False)
    steps = res.steps
    assert steps.step.tolist() == list(range(len(steps)))
    assert steps.n_kept.tolist() == list(range(len(steps)))  # one node per greedy step
    assert len(steps) <= 4 and not steps.met.iloc[:-1].any()  # stops at the first step that meets it
    assert steps.met.iloc[-1] or len(steps) == 4
    assert res.keep_nodes == steps.kept_onnx_nodes.iloc[-1]
    assert res.met == (res.verified_value >= 37)  # verified on all 450 samples, searched on 200
    assert res.latency is None and res.speed_cost is None


def test_attribution_gives_relu_error_to_its_conv(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    var = make_variant(model, "int8", calib=sample("digits_calib.npz"), progress=False)
    cands = lowered_nodes(model, var)
    import pandas as pd

    nodes = [n.name for n in model.graph.node]
    frame = pd.DataFrame({"onnx_node": nodes, "local_noise": [1.0] * len(nodes)})
    score = attribute_noise(model, frame, cands)
    assert sum(score.values()) == pytest.approx(len(nodes))  # every node's error owned once
    conv1 = next(n.name for n in model.graph.node if n.op_type == "Conv")
    relu1 = next(n.name for n in model.graph.node if n.op_type == "Relu")
    assert score[conv1] >= 2  # itself + the Relu after it
    assert relu1 not in score


def test_labels_required_for_top1_target(sample):
    with pytest.raises(UsageError, match="labels"):
        propose_mixed_precision(sample("digits_cnn.onnx"), "int8", target="top1_drop<=0.5",
                                data=sample("digits_calib.npz"), progress=False)


def _cut_at(proto: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """``proto`` with ``tensor`` as its only output and the nodes it does not need removed."""
    need, keep = {tensor}, []
    for node in reversed(proto.graph.node):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    g = proto.graph
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    del g.node[:]
    g.node.extend(reversed(keep))
    used = [i for i in g.initializer if i.name in need]
    del g.initializer[:]
    g.initializer.extend(used)
    inputs = [i for i in g.input if i.name in need]
    del g.input[:]
    g.input.extend(inputs)
    return proto


def test_light_resnet50_tight_cosine_target(light):
    """Light ResNet-50 (constant weights) at INT8. Its softmax output is over identical logits, so it is
    exact at any precision; the model is cut after its first stage (11 Conv) where INT8 error shows."""
    full = onnx.load(str(light("resnet50")))
    sums = [n.output[0] for n in full.graph.node if n.op_type == "Sum"]
    model = wb.load(_cut_at(full, sums[2]).SerializeToString(), name="resnet50_stage1")
    data = [synthetic_inputs(model, seed=s) for s in range(2)]
    calib = [synthetic_inputs(model, seed=100 + s) for s in range(16)]
    res = propose_mixed_precision(model, "int8", target="cosine>=0.9999985", data=data, calib=calib,
                                  strategy="bisect", max_steps=5, layerwise_limit=1, latency_iterations=3,
                                  progress=False, qdq_form="tensorrt")  # the symmetric form the numbers were set for
    assert res.baseline_value < 0.9999985  # full int8 misses the tight target
    assert res.met and res.verified_value >= 0.9999985
    assert 0 < len(res.keep_nodes) < len(res.candidates)
    assert {n.op_type for n in model.graph.node if n.name in res.keep_nodes} == {"Conv"}
