"""Layerwise comparison on the digits CNN (real data): topological rows, matching rules, divergence."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import workbench as wb
from workbench.compare import layerwise, layerwise_tidy, mark_debug_tensors, metrics
from workbench.errors import UsageError
from workbench.precision import make_variant


@pytest.fixture
def digits(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    with np.load(sample("digits_test.npz")) as z:
        feeds = {"image": z["image"][:200].astype(np.float32)}
    return model, feeds, sample("digits_calib.npz")


def test_int8_rows_cover_conv_gemm_in_topo_order(digits):
    model, feeds, calib = digits
    var = make_variant(model, "int8", calib=calib, progress=False)
    df = layerwise(model, var, feeds=feeds, threshold=0.99999, progress=False)
    order = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert order and [n for n in df.onnx_node if n in order] == order
    assert df["order"].is_monotonic_increasing
    first = df.attrs["first_divergent"]
    names = {n.name for n in model.graph.node}
    assert first in names  # a real node of the original model
    assert df.loc[df.diverged, "onnx_node"].iloc[0] == first
    assert df.loc[df.first_divergent, "onnx_node"].tolist() == [first]
    assert (df.loc[df.onnx_node == first, "cosine"] < 0.99999).all()
    # Q/DQ: node outputs keep their names (exact) in ORT's QDQ graphs
    assert set(df.match) <= {"exact", "node-output", "dequantized"}
    assert df.attrs["unmatched"] == []


def test_int8_values_equal_a_direct_ort_run(digits):
    """The Conv output error in the table equals one computed from two hand-built ORT sessions."""
    model, feeds, calib = digits
    var = make_variant(model, "int8", calib=calib, progress=False)
    df = layerwise(model, var, feeds=feeds, progress=False)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    t = conv.output[0]

    def run(proto):
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        p.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(p.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return s.run([t], feeds)[0]

    a, b = run(model.proto_with_data()), run(var.model.proto_with_data())
    row = df[df.tensor == t].iloc[0]
    assert row.cosine == pytest.approx(metrics.cosine_similarity(a, b), abs=1e-12)
    assert row.max_abs == pytest.approx(float(np.abs(a.astype(np.float64) - b).max()), rel=1e-9)
    assert 0 < row.max_abs  # int8 really changes the tensor


def test_fp16_layerwise_and_tidy(digits):
    model, feeds, _ = digits
    var = make_variant(model, "fp16", progress=False)
    df = layerwise(model, var, feeds=feeds, metric="snr_db", threshold=200.0, progress=False)
    assert (df.match == "exact").all()
    assert df.attrs["first_divergent"] == df.onnx_node.iloc[0]  # every fp16 tensor is below 200 dB
    assert ((df.cosine > 0.999) & (df.cosine <= 1.0)).all()
    tidy = layerwise_tidy(df)
    assert list(tidy.columns) == ["variant", "onnx_node", "tensor", "metric", "value"]
    assert len(tidy) == len(df) * tidy.metric.nunique()


def test_fp16_keep_all_matches_renamed_outputs(digits):
    """Nodes kept in fp32 by the fp16 recipe get renamed outputs (``<node>_output_cast_<i>``); the
    node-output rule still pairs every Conv/Gemm with its original tensor."""
    model, feeds, _ = digits
    names = [n.name for n in model.graph.node]
    var = make_variant(model, "fp16", keep_nodes=names, progress=False)
    vnames = {o for n in var.model.graph.node for o in n.output}
    df = layerwise(model, var, feeds=feeds, progress=False)
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            row = df[df.onnx_node == n.name].iloc[0]
            assert row.variant_tensor in vnames
            assert row.match == ("exact" if n.output[0] in vnames else "node-output")
    convs = df[df.op_type == "Conv"]
    assert (convs.snr_db > 100).all()  # kept in fp32: only float reordering differences, if any


def test_bad_metric_and_missing_threshold(digits):
    model, feeds, _ = digits
    with pytest.raises(UsageError):
        layerwise(model, "fp16", feeds=feeds, metric="psnr", progress=False)
    with pytest.raises(UsageError, match="threshold"):
        layerwise(model, "fp16", feeds=feeds, metric="max_abs", progress=False)


@pytest.mark.rtx
def test_mark_debug_tensors_on_a_tensorrt_rtx_network(sample):
    trt = pytest.importorskip("tensorrt_rtx")
    path = sample("digits_cnn.onnx")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(path.read_bytes())
    model = wb.load(path)
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    marked = mark_debug_tensors(network, convs)
    assert marked and set(marked) <= set(convs)
    found = {network.get_layer(i).get_output(j).name: network.get_layer(i).get_output(j)
             for i in range(network.num_layers) for j in range(network.get_layer(i).num_outputs)}
    assert all(network.is_debug_tensor(found[n]) for n in marked)


def test_variant_ort_cpu_cannot_load_is_a_clear_error(sample):
    """bf16 Conv has no ORT CPU kernel: layerwise says so (the GPU report then notes it and carries on)."""
    import workbench as wb
    from workbench.errors import UnsupportedError

    m = wb.load(sample("digits_cnn.onnx"))
    v = wb.make_variant(m, "bf16", progress=False)
    with pytest.raises(UnsupportedError, match="ONNX Runtime CPU"):
        wb.layerwise(m, v, feeds=wb.synthetic_inputs(m, batch=4))
