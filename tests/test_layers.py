"""Per-layer timings (workbench.measure.layers) and their mapping to ONNX nodes (workbench.measure.mapping).

ONNX Runtime tests profile real sessions on real models. TensorRT tests marked "format test" feed
small literal strings written in the documented formats to the parsers: they are not TensorRT runs.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.data import synthetic_inputs
from workbench.errors import UsageError
from workbench.measure.latency import measure_latency
from workbench.measure.layers import (COLUMNS, coverage, parse_ort_trace, parse_trt_layer_info, profile,
                                      profile_layers, save_layers_csv, trt_layer_rows)
from workbench.measure.mapping import (UNMAPPED, GraphIndex, name_nodes, parse_trt_metadata, split_trt_layer_name,
                                       spread, trt_layer_nodes)
from workbench.model import load
from workbench.variant import Variant

QUIET = BuildOptions(progress=False)


def _engine(variant):
    return get_backend("onnxruntime").build(variant, None, QUIET)


def _names(model):
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)]


@pytest.fixture(scope="module")
def resnet_profile(tmp_path_factory):
    import shutil

    from conftest import light_path

    dst = tmp_path_factory.mktemp("light") / "light_resnet50.onnx"
    shutil.copy(light_path("resnet50"), dst)  # tests never touch site-packages
    m = load(dst)
    eng = _engine(Variant.of(m))
    feeds = synthetic_inputs(m)
    return m, profile(eng, feeds, warmup=1, iterations=3, layer_iterations=2, layer_warmup=1)


def test_resnet_every_conv_is_mapped(resnet_profile):
    m, prof = resnet_profile
    df = prof.layers
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    convs = {name for name, n in zip(_names(m), m.graph.node) if n.op_type == "Conv"}
    assert len(convs) == 53
    assert convs <= set(df["onnx_node"])
    assert df["share"].sum() == pytest.approx(1.0)
    assert (df["time_ms"] > 0).all() and (df["calls"] > 0).all()
    covered = {n for nodes in df["onnx_nodes"] for n in nodes}
    assert convs <= covered
    # every covered node is a real node of the model
    assert covered <= set(_names(m))


def test_resnet_coverage_is_computed(resnet_profile):
    _, prof = resnet_profile
    cov = prof.coverage
    assert cov.layers_ms == pytest.approx(prof.layers["time_ms"].sum())
    assert cov.e2e_ms == prof.latency.stats["mean_ms"]
    assert cov.ratio == pytest.approx(cov.layers_ms / cov.e2e_ms)
    assert cov.flagged == (not 0.9 <= cov.ratio <= 1.1) and bool(cov.reason) == cov.flagged
    assert 0 < cov.in_run <= 1.0 + 1e-9  # kernels run inside model_run
    j = cov.to_json()
    assert j["coverage"] == cov.ratio and j["flagged"] == cov.flagged


def test_csv_roundtrip(resnet_profile, tmp_path):
    import pandas as pd

    _, prof = resnet_profile
    p = save_layers_csv(prof.layers, tmp_path / "layers.csv")
    back = pd.read_csv(p)
    assert len(back) == len(prof.layers)
    assert set(back["onnx_node"]) == set(prof.layers["onnx_node"])


def test_spread_keeps_total(resnet_profile):
    _, prof = resnet_profile
    s = spread(prof.layers)
    assert s["time_ms"].sum() == pytest.approx(prof.layers["time_ms"].sum())
    assert (s["onnx_nodes"].map(len) <= 1).all()


def test_trace_is_written_to_a_temp_dir(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    m = load(sample("digits_cnn.onnx"))
    df = profile_layers(_engine(Variant.of(m)), synthetic_inputs(m, batch=8), iterations=2, warmup=1)
    assert len(df)
    assert not [f for f in set(os.listdir(tmp_path)) - before if f.endswith(".json")]


def test_without_layout_optimizations_kernels_keep_node_names(sample):
    m = load(sample("digits_cnn.onnx"))
    df = profile_layers(_engine(Variant.of(m)), synthetic_inputs(m, batch=8), iterations=2, warmup=1,
                        layout_optimizations=False)
    assert not df["layer"].str.endswith("_nchwc").any()
    assert set(df["onnx_node"]) <= set(_names(m))


def test_bad_iterations(sample):
    m = load(sample("digits_cnn.onnx"))
    with pytest.raises(UsageError):
        profile_layers(_engine(Variant.of(m)), synthetic_inputs(m, batch=2), iterations=0)


def test_precision_variants_line_up_by_onnx_node(sample):
    from workbench.precision import make_variant

    m = load(sample("digits_cnn.onnx"))
    feeds = synthetic_inputs(m, batch=32)
    tables = {"fp32": profile_layers(_engine(Variant.of(m)), feeds, iterations=2, warmup=1)}
    tables["fp16"] = profile_layers(_engine(make_variant(m, "fp16", progress=False)), feeds, iterations=2, warmup=1)
    tables["int8"] = profile_layers(_engine(make_variant(m, "int8", calib=sample("digits_calib.npz"), progress=False)),
                                    feeds, iterations=2, warmup=1)
    fp32 = set(tables["fp32"]["onnx_node"]) - {UNMAPPED}
    source = set(_names(m))
    assert fp32 and fp32 <= source
    for p in ("fp16", "int8"):
        other = set(tables[p]["onnx_node"]) - {UNMAPPED}
        assert len(fp32 & other) >= 0.8 * len(fp32), (p, fp32 - other)
        # canonical names are nodes of the source model, not inserted Cast/Q/DQ nodes
        assert other <= source, (p, other - source)
    int8 = tables["int8"]
    qdq = int8[int8["layer_type"].isin(["QuantizeLinear", "DequantizeLinear"])]
    assert len(qdq) and set(qdq["onnx_node"]) <= source
    convs = int8[int8["layer_type"] == "QLinearConv"]
    assert len(convs) == 3 and set(convs["onnx_node"]) == {n for n in source if n.endswith("Conv")}


def _if_model():
    x = h.make_tensor_value_info("x", T.FLOAT, [4, 64])
    y = h.make_tensor_value_info("y", T.FLOAT, [4, 64])
    w = h.make_tensor("w", T.FLOAT, [64, 64], np.full(64 * 64, 0.01, np.float32).tolist())
    then_g = h.make_graph([h.make_node("MatMul", ["x1", "w"], ["t_mm"], name="then_matmul"),
                           h.make_node("Relu", ["t_mm"], ["t_out"], name="then_relu")], "then", [],
                          [h.make_tensor_value_info("t_out", T.FLOAT, [4, 64])])
    else_g = h.make_graph([h.make_node("Neg", ["x1"], ["e_out"], name="else_neg")], "else", [],
                          [h.make_tensor_value_info("e_out", T.FLOAT, [4, 64])])
    nodes = [h.make_node("Relu", ["x"], ["x1"], name="pre_relu"),
             h.make_node("ReduceSum", ["x1"], ["s"], name="sum", keepdims=0),
             h.make_node("Constant", [], ["zero"], name="zero", value=h.make_tensor("z", T.FLOAT, [], [0.0])),
             h.make_node("Greater", ["s", "zero"], ["cond"], name="cond"),
             h.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    g = h.make_graph(nodes, "ifm", [x], [y], initializer=[w])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)], ir_version=8)


def test_if_subgraph_time_goes_to_the_parent():
    m = load(_if_model(), name="ifm")
    eng = _engine(Variant.of(m))
    df = profile_layers(eng, {"x": np.ones((4, 64), np.float32)}, iterations=3, warmup=1)
    sub = df[df["layer"].isin(["then_matmul", "then_relu"])]
    assert len(sub) == 2, df["layer"].tolist()
    assert set(sub["onnx_node"]) == {"branch"}
    assert df.loc[df["layer"] == "branch", "onnx_node"].item() == "branch"
    assert df["share"].sum() == pytest.approx(1.0)


def test_parse_ort_trace_self_time_and_warmup():
    """Format test: ORT Chrome-trace events (cat/name/ts/dur/args) as ORT writes them."""
    ev = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},  # warm-up
        {"cat": "Node", "name": "a_kernel_time", "ts": 10, "dur": 50, "tid": 1, "args": {"op_name": "Relu", "provider": "CPUExecutionProvider"}},
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        {"cat": "Node", "name": "a_kernel_time", "ts": 210, "dur": 20, "tid": 1, "args": {"op_name": "Relu", "provider": "CPUExecutionProvider"}},
        {"cat": "Node", "name": "br_kernel_time", "ts": 235, "dur": 60, "tid": 1, "args": {"op_name": "If", "provider": "CPUExecutionProvider"}},
        {"cat": "Node", "name": "inner_kernel_time", "ts": 240, "dur": 45, "tid": 1, "args": {"op_name": "MatMul", "provider": "CPUExecutionProvider",
                                                                                          "input_type_shape": [{"float": [4, 64]}]}},
    ]
    stats, runs, run_ms = parse_ort_trace(ev, skip_runs=1)
    assert runs == 1 and run_ms == pytest.approx(0.1)
    assert stats["a"]["dur_us"] == 20 and stats["a"]["provider"] == "CPU"
    assert stats["br"]["dur_us"] == 15  # 60 minus the nested 45
    assert stats["inner"]["shapes"] == "float[4, 64]"


def test_canonical_rules_for_plumbing():
    """Q → producer, DQ/Cast → consumer, subgraph → parent (module docstring of mapping.py)."""
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="r_QuantizeLinear"),
             h.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"], name="r_DequantizeLinear"),
             h.make_node("Cast", ["rd"], ["rc"], name="cast", to=T.FLOAT),
             h.make_node("Neg", ["rc"], ["y"], name="neg"),
             h.make_node("Cast", ["y"], ["yo"], name="out_cast", to=T.FLOAT)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2])],
                     [h.make_tensor_value_info("yo", T.FLOAT, [2])],
                     initializer=[h.make_tensor("s", T.FLOAT, [], [0.1]), h.make_tensor("z", T.INT8, [], [0])])
    ix = GraphIndex.of(h.make_model(g))
    assert ix.canonical("r_QuantizeLinear") == "relu"
    assert ix.canonical("r_DequantizeLinear") == "neg"
    assert ix.canonical("cast") == "neg"
    assert ix.canonical("out_cast") == "neg"  # no consumer: falls back to the producer
    assert ix.anchor(["r_QuantizeLinear", "relu"]) == "relu"
    ixi = GraphIndex.of(name_nodes(_if_model()))
    assert ixi.canonical("then_matmul") == "branch" and ixi.canonical("else_neg") == "branch"


def test_name_nodes_rule():
    g = h.make_graph([h.make_node("Relu", ["x"], ["a"]), h.make_node("Neg", ["a"], ["y"], name="n")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    p = name_nodes(h.make_model(g))
    assert [n.name for n in p.graph.node] == ["Relu_0", "n"]


# ------------------------------------------------------------------ TensorRT parsers (format tests)
def test_trt_metadata_format():
    """Format test: onnx-tensorrt writes `[ONNX Layer: <name> | <function stack>]`, joined by \\x1f/\\x1e."""
    md = "[ONNX Layer: /conv1/Conv]\x1f[ONNX Layer: /relu1/Relu | fn_node (MyFunc)]\x1e[ONNX Layer: /add]"
    assert parse_trt_metadata(md) == ["/conv1/Conv", "/relu1/Relu", "/add"]
    assert parse_trt_metadata("[ONNX Layer: a]+[ONNX Layer: b]") == ["a", "b"]
    assert parse_trt_metadata("") == [] and parse_trt_metadata(None) == []


@pytest.mark.parametrize("name,nodes,kind", [
    ("conv1", ["conv1"], "layer"),
    ("conv1 + relu1", ["conv1", "relu1"], "fused"),
    ("PWN(PWN(/a/Sigmoid), /a/Mul)", ["/a/Sigmoid", "/a/Mul"], "pointwise"),
    ("{ForeignNode[/blk/MatMul.../blk/Softmax]}", ["/blk/MatMul", "/blk/Softmax"], "foreign"),
    ("Reformatting CopyNode for Input Tensor 0 to conv2 + relu2", ["conv2", "relu2"], "reformat"),
    ("Reformatting CopyNode for Network Input image", [], "network-io"),
    ("conv1 [profile 1]", ["conv1"], "layer"),
])
def test_trt_layer_name_formats(name, nodes, kind):
    """Format test: TensorRT layer names as trtexec/TREx print them."""
    assert split_trt_layer_name(name) == (nodes, kind)


def test_trt_rows_join_inspector_and_profiler():
    """Format test: inspector JSON (DETAILED) + IProfiler sums → rows mapped to nodes of a real graph."""
    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                      h.make_node("Relu", ["c"], ["r"], name="relu"),
                      h.make_node("MatMul", ["r", "m"], ["mm"], name="mm"),
                      h.make_node("Softmax", ["mm"], ["y"], name="sm")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0]), h.make_tensor("m", T.FLOAT, [4, 4], [0.0] * 16)])
    ix = GraphIndex.of(h.make_model(g))
    info = {"Layers": [
        {"Name": "conv + relu", "LayerType": "CaskConvolution", "TacticName": "sm90_xmma_fprop",
         "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "r", "Format/Datatype": "Channel major FP16 format"}],
         "Metadata": "[ONNX Layer: conv]\x1f[ONNX Layer: relu]"},
        {"Name": "{ForeignNode[mm...sm]}", "LayerType": "Myelin", "Inputs": [], "Outputs": []},
        "Reformatting CopyNode for Network Input x",
    ], "Bindings": ["x", "y"]}
    recs = parse_trt_layer_info(info)
    assert recs[0]["in_precision"] == "fp32" and recs[0]["out_precision"] == "fp16"
    assert recs[0]["tactic"] == "sm90_xmma_fprop"
    rows = trt_layer_rows({"conv + relu": (3.0, 3), "{ForeignNode[mm...sm]}": (6.0, 3),
                           "Reformatting CopyNode for Network Input x": (0.3, 3)}, 3, recs, ix)
    by = {r["layer"]: r for r in rows}
    assert by["conv + relu"]["onnx_nodes"] == ["conv", "relu"] and by["conv + relu"]["onnx_node"] == "conv"
    assert by["conv + relu"]["time_ms"] == 1.0 and by["conv + relu"]["mapped_by"] == "metadata"
    assert by["{ForeignNode[mm...sm]}"]["onnx_nodes"] == ["mm", "sm"]
    assert by["Reformatting CopyNode for Network Input x"]["onnx_node"] == UNMAPPED
    nodes, kind = trt_layer_nodes("{ForeignNode[relu...sm]}", None, ix)
    assert kind == "foreign" and nodes == ["relu", "mm", "sm"]  # widened to the nodes in between


def test_trt11_inspector_schema():
    """Format test: TensorRT 11 split each layer tensor's ``Format/Datatype`` into ``Datatype`` and ``Format``
    and replaced ``Bindings`` with ``I/O Tensors`` (NVIDIA migration guide "IEngineInspector JSON Output";
    Polygraphy reads both schemas). Precisions and formats come out as with the 10.x schema."""
    info = {"Layers": [
        {"Name": "conv + relu", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "x", "Dimensions": [1, 1, 4, 4], "Datatype": "Float",
                     "Format": "Row major linear FP32 format (kLINEAR)"}],
         "Outputs": [{"Name": "r", "Dimensions": [1, 1, 4, 4], "Datatype": "BFloat16", "Format": "Channel major"}],
         "Metadata": "[ONNX Layer: conv]"}],
        "I/O Tensors": [{"Name": "x", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 1, 4, 4]}]}
    rec = parse_trt_layer_info(info)[0]
    assert rec["in_precision"] == "fp32" and rec["out_precision"] == "bf16"
    assert rec["in_format"] == "Float Row major linear FP32 format (kLINEAR)"
    assert rec["out_format"] == "BFloat16 Channel major"
    ten = parse_trt_layer_info({"Layers": [{"Name": "c", "Inputs": [{"Name": "x", "Format/Datatype": "Row major Int8 format"}],
                                            "Outputs": []}], "Bindings": ["x"]})[0]
    assert ten["in_precision"] == "int8" and ten["in_format"] == "Row major Int8 format"


def test_trt_profiler_class_with_tensorrt_rtx():
    """The IProfiler subclass is a real subclass of tensorrt_rtx.IProfiler (its callback is called here
    directly: no engine runs without a GPU)."""
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed")
    from workbench.measure.layers import make_trt_profiler

    p = make_trt_profiler(trt)
    assert isinstance(p, trt.IProfiler)
    p.report_layer_time("conv", 0.5)
    p.report_layer_time("conv", 0.25)
    assert p.times == {"conv": [0.75, 2]}


def test_coverage_flag(resnet_profile):
    _, prof = resnet_profile
    half = prof.layers.assign(time_ms=prof.layers["time_ms"] * 0)
    cov = coverage(half, prof.latency)
    assert cov.ratio == 0 and cov.flagged


@pytest.mark.gpu
@pytest.mark.trt
def test_tensorrt_profile_layers(trt_backend, sample):
    b = trt_backend
    m = load(sample("digits_cnn.onnx"))
    eng = b.build(Variant.of(m), "image:32x1x8x8", QUIET)
    feeds = synthetic_inputs(m, batch=32)
    df = profile_layers(eng, feeds, iterations=5, warmup=2)
    assert len(df) and df["share"].sum() == pytest.approx(1.0)
    assert {n for n in _names(m) if n.endswith("Conv")} <= {x for nodes in df["onnx_nodes"] for x in nodes}
    cov = coverage(df, measure_latency(eng, feeds, iterations=20))
    assert cov.ratio > 0
