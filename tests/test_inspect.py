"""workbench.inspect on real files, checked against independent counts over onnx.load()."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.errors import ShapeSpecError
from workbench.inspect import inspect

ROOT = Path(__file__).resolve().parents[1]
LIGHT_MODELS = ["resnet50", "densenet121", "inception_v1"]


def _hand_conv_macs(x_shape, w_shape, strides, pads, dilations=None):
    """Conv MACs from first principles: output spatial size by the ONNX formula, then
    N * C_out * H_out * W_out * (C_in / group) * kH * kW."""
    n, _, h, w = x_shape
    c_out, c_in_g, kh, kw = w_shape
    d = dilations or (1, 1)
    ho = (h + pads[0] + pads[2] - d[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - d[1] * (kw - 1) - 1) // strides[1] + 1
    return n * c_out * ho * wo * c_in_g * kh * kw


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_counts_match_independent_count(light, name):
    path = light(name)
    ref = onnx.load(str(path))
    info = inspect(path)
    assert info.nodes == len(ref.graph.node)
    assert info.ops == dict(Counter(n.op_type for n in ref.graph.node))
    assert info.params == sum(int(np.prod(t.dims)) for t in ref.graph.initializer)
    assert info.params_by_dtype == {
        onnx.TensorProto.DataType.Name(dt).lower(): sum(int(np.prod(t.dims)) for t in ref.graph.initializer
                                                        if t.data_type == dt)
        for dt in {t.data_type for t in ref.graph.initializer}}
    assert info.opset == next(o.version for o in ref.opset_import if o.domain in ("", "ai.onnx"))
    assert info.ir_version == ref.ir_version
    assert info.producer_name == ref.producer_name
    inits = {t.name for t in ref.graph.initializer}
    assert [i["name"] for i in info.inputs] == [i.name for i in ref.graph.input if i.name not in inits]
    assert [o["name"] for o in info.outputs] == [o.name for o in ref.graph.output]
    assert info.hash == wb.load(path).hash
    assert info.shape_inference and info.flops_unknown_nodes == 0
    assert len(info.nodes_frame()) == info.nodes
    assert info.ops_frame()["count"].sum() == info.nodes


def test_resnet50_flops_and_hand_computed_nodes(light):
    path = light("resnet50")
    info = inspect(path)
    # ResNet-50 at 1x3x224x224: ~4.1 G multiply-accumulates (the "4.1 GFLOPs" of the literature).
    assert info.macs == pytest.approx(4.1e9, rel=0.03)
    assert info.flops == 2 * info.macs

    ref = onnx.load(str(path))
    # Weight shapes of the light model come from ConstantOfShape(shape initializer).
    init = {t.name: onnx.numpy_helper.to_array(t) for t in ref.graph.initializer}
    w_shape = {n.output[0]: tuple(int(d) for d in init[n.input[0]]) for n in ref.graph.node
               if n.op_type == "ConstantOfShape"}
    nodes = info.nodes_frame().set_index("index")

    conv_i, conv = next((i, n) for i, n in enumerate(ref.graph.node) if n.op_type == "Conv")
    x = tuple(d.dim_value for d in ref.graph.input[0].type.tensor_type.shape.dim)
    assert conv.input[0] == ref.graph.input[0].name  # the stem conv reads the image
    hand = _hand_conv_macs(x, w_shape[conv.input[1]], _attr(conv, "strides"), _attr(conv, "pads"))
    assert hand == 118_013_952  # 64*112*112*3*7*7, the textbook stem count
    assert nodes.loc[conv_i, "macs"] == hand
    assert nodes.loc[conv_i, "flops"] == 2 * hand

    gemm_i, gemm = next((i, n) for i, n in enumerate(ref.graph.node) if n.op_type == "Gemm")
    wk = w_shape[gemm.input[1]]  # [N, K] with transB=1 (caffe2 FC)
    assert _attr(gemm, "transB") == 1
    assert nodes.loc[gemm_i, "macs"] == 1 * wk[0] * wk[1] == 2048 * 1000
    # bytes moved: input [1,2048] + W [1000,2048] + bias [1000] + output [1,1000], float32
    assert nodes.loc[gemm_i, "bytes"] == 4 * (2048 + 1000 * 2048 + 1000 + 1000)


def _attention_model(tmp_path: Path) -> Path:
    """Q·K^T and P·V batched MatMuls with symbolic batch/seq, plus a Gemm-free Linear (MatMul + weight)."""
    b, s = "batch", "seq"
    wq = helper.make_tensor("Wq", TensorProto.FLOAT, [64, 64], np.zeros(64 * 64, np.float32))
    shape = helper.make_tensor("heads", TensorProto.INT64, [4], [0, 0, 4, 16])
    perm_q = helper.make_attribute("perm", [0, 2, 1, 3])
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="/enc/layer.0/attn/q/MatMul"),
        helper.make_node("Reshape", ["q", "heads"], ["qh"], name="/enc/layer.0/attn/Reshape"),
        helper.make_node("Transpose", ["qh"], ["qt"], name="/enc/layer.0/attn/Transpose"),
        helper.make_node("Transpose", ["qh"], ["kt"], name="/enc/layer.0/attn/Transpose_1", perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["qt", "kt"], ["scores"], name="/enc/layer.0/attn/MatMul"),
        helper.make_node("Softmax", ["scores"], ["p"], name="/enc/layer.0/attn/Softmax", axis=-1),
        helper.make_node("MatMul", ["p", "qt"], ["ctx"], name="/enc/layer.0/attn/MatMul_1"),
    ]
    nodes[2].attribute.append(perm_q)
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, s, 64])],
                          [helper.make_tensor_value_info("ctx", TensorProto.FLOAT, [b, 4, s, 16])],
                          initializer=[wq, shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    onnx.checker.check_model(m)
    p = tmp_path / "attn.onnx"
    onnx.save(m, str(p))
    return p


def test_symbolic_dims_are_strings_and_flops_unknown(tmp_path):
    info = inspect(_attention_model(tmp_path))
    assert info.inputs == [{"name": "x", "dtype": "float", "shape": ["batch", "seq", 64]}]
    assert info.outputs[0]["shape"] == ["batch", 4, "seq", 16]
    assert info.flops_unknown_nodes == 3
    assert math.isnan(info.flops_by_op().get("MatMul", math.nan))
    assert any("unknown shapes" in w for w in info.warnings)
    assert info.params == 64 * 64 + 4
    nf = info.nodes_frame()
    assert nf["scope"].tolist()[:1] == ["/enc/layer.0/attn/q"]
    assert set(nf["scope"][1:]) == {"/enc/layer.0/attn"}
    assert json.loads(json.dumps(info.to_json()))["flops_unknown_nodes"] == 3  # NaN-free JSON


def test_shapes_make_attention_flops_concrete(tmp_path):
    path = _attention_model(tmp_path)
    info = inspect(path, shapes="x:2x10x64")
    B, S, H, D = 2, 10, 4, 16
    nf = info.nodes_frame().set_index("onnx_node")
    assert nf.loc["/enc/layer.0/attn/q/MatMul", "macs"] == B * S * 64 * 64
    assert nf.loc["/enc/layer.0/attn/MatMul", "macs"] == B * H * S * S * D  # batch * M * N * K
    assert nf.loc["/enc/layer.0/attn/MatMul_1", "macs"] == B * H * S * D * S
    assert nf.loc["/enc/layer.0/attn/MatMul", "output_shapes"] == [[B, H, S, S]]
    assert info.flops_unknown_nodes == 0
    assert info.flops == 2 * (B * S * 64 * 64 + 2 * B * H * S * S * D)
    assert info.shapes == {"x": [2, 10, 64]}
    assert info.tensors["ctx"]["shape"] == [B, H, S, D]
    # the declared (symbolic) IO stays as the model declares it
    assert info.inputs[0]["shape"] == ["batch", "seq", 64]
    # a three-shape range uses opt
    assert inspect(path, shapes="x:1x1x64/2x10x64/4x32x64").flops == info.flops


@pytest.mark.parametrize("bad", ["y:1x2x64", "x:1x2", "x:1x2x32", "x:1x0x64"])
def test_bad_shapes_are_refused(tmp_path, bad):
    with pytest.raises(ShapeSpecError):
        inspect(_attention_model(tmp_path), shapes=bad)


def test_conv_transpose_gemm_transA_and_constant_params(tmp_path):
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 4, 3, 3], np.zeros(8 * 4 * 9, np.float32))  # [C_in, C_out, k, k]
    c = helper.make_node("Constant", [], ["B"], value=helper.make_tensor("b", TensorProto.FLOAT16, [5, 6],
                                                                         np.zeros(30, np.float16)))
    nodes = [
        helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2]),
        helper.make_node("Flatten", ["y"], ["f"]),
        helper.make_node("Cast", ["B"], ["Bf"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["a", "Bf"], ["g"], transA=1),
        c,
    ]
    nodes = [nodes[4]] + nodes[:4]
    g = helper.make_graph(nodes, "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 5]),
                                        helper.make_tensor_value_info("a", TensorProto.FLOAT, [5, 7])],
                          [helper.make_tensor_value_info("f", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("g", TensorProto.FLOAT, None)], initializer=[w])
    p = tmp_path / "ct.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    info = inspect(p)
    nf = info.nodes_frame().set_index("op_type")
    assert nf.loc["ConvTranspose", "macs"] == 1 * 8 * 5 * 5 * 4 * 3 * 3  # each input pixel x (C_out/g x k x k)
    assert nf.loc["Gemm", "macs"] == 7 * 6 * 5  # A^T [7,5] x B [5,6]
    assert info.params == 8 * 4 * 9 + 30
    assert info.params_by_dtype == {"float": 288, "float16": 30}
    assert info.param_bytes_by_dtype == {"float": 288 * 4, "float16": 60}
    assert info.tensors["g"]["shape"] == [7, 6]  # output shape inferred although declared unknown


def test_subgraph_nodes_counted_separately(tmp_path):
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["t"])],
                               "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "if",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    p = tmp_path / "if.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    info = inspect(p)
    assert info.nodes == 1 and info.ops == {"If": 1}
    assert info.subgraph_nodes == 3 and info.subgraph_ops == {"Relu": 1, "Neg": 1, "Abs": 1}


def test_failed_shape_inference_is_a_warning_not_a_crash(tmp_path):
    # [2,3] x [4,5]: incompatible MatMul, strict inference raises; a following Relu keeps a node count
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                          "bad", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                                  helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 5])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    p = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    with pytest.raises(Exception):
        onnx.shape_inference.infer_shapes(onnx.load(str(p)), strict_mode=True)
    info = inspect(p)
    assert info.nodes == 2
    assert not info.shape_inference
    assert any("shape inference failed" in w for w in info.warnings)
    assert info.flops_unknown_nodes == 1 and info.flops == 0
    assert json.loads(json.dumps(info.to_json()))["nodes"] == 2


def test_frames_and_html(light):
    info = inspect(light("inception_v1"))
    s = info.summary()
    assert list(s.columns) == ["fact", "value"] and s["fact"].is_unique
    assert dict(zip(s["fact"], s["value"]))["nodes"] == info.nodes
    assert list(info.params_frame().columns) == ["dtype", "params", "bytes"]
    assert info.params_frame()["params"].sum() == info.params
    io = info.io_frame()
    assert io["kind"].tolist() == ["input", "output"]
    tf = info.tensors_frame()
    assert tf["tensor"].is_unique and set(tf["kind"]) >= {"input", "output", "initializer", "intermediate"}
    nf = info.nodes_frame()
    assert nf.loc[nf.op_type.isin(["Conv", "Gemm"]), "flops"].sum() == pytest.approx(info.flops)
    assert nf["bytes"].sum() == pytest.approx(info.bytes)
    html = info._repr_html_()
    assert "<table" in html and "light_inception_v1" in html


def test_inspect_does_not_load_external_data(light, tmp_path):
    src = onnx.load(str(light("inception_v1")))
    w = onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "bigw")
    src.graph.initializer.append(w)
    d = tmp_path / "ext"
    d.mkdir()
    onnx.save_model(src, str(d / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=1024)
    m = wb.load(d / "m.onnx")
    ext = [t for t in m.proto.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert ext and not any(t.raw_data for t in ext)
    (d / "m.data").rename(tmp_path / "moved.data")  # any read of the data file would now fail
    info = inspect(m, hash=False)
    assert info.params == sum(int(np.prod(t.dims)) for t in src.graph.initializer)
    assert info.external_data and info.hash is None
    assert info.flops_unknown_nodes == 0 and info.flops > 0
    with pytest.raises(OSError):
        m.hash  # noqa: B018  (the hash does read the data files)


def _cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_cli_json_and_text(light):
    path = light("resnet50")
    out = json.loads(_cli("inspect", path, "--json").stdout)
    for k in ("nodes", "ops", "params", "inputs", "outputs", "opset", "opset_imports", "ir_version",
              "producer_name", "hash", "flops", "macs", "flops_unknown_nodes", "bytes", "warnings"):
        assert k in out, k
    ref = onnx.load(str(path))
    assert out["nodes"] == len(ref.graph.node)
    assert out["inputs"][0]["shape"] == [1, 3, 224, 224]
    detail = json.loads(_cli("inspect", path, "--json", "--detail").stdout)
    assert len(detail["node_list"]) == out["nodes"]
    text = _cli("inspect", path).stdout
    assert "FLOPs" in text and str(out["nodes"]) in text


def test_cli_inspect_shapes(tmp_path):
    path = _attention_model(tmp_path)
    out = json.loads(_cli("inspect", path, "--json", "--shapes", "x:2x10x64").stdout)
    assert out["flops_unknown_nodes"] == 0 and out["shapes"] == {"x": [2, 10, 64]}
    r = _cli("inspect", path, "--shapes", "nope:1x2x3", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_run(light, tmp_path):
    path = light("squeezenet")
    a = json.loads(_cli("run", path, "--json", "--seed", "3").stdout)
    b = json.loads(_cli("run", path, "--json", "--seed", "3").stdout)
    assert a == b
    (out,) = a["outputs"]
    ref = onnx.load(str(path))
    assert out["name"] == ref.graph.output[0].name and out["dtype"] == "float32" and out["nan"] == 0
    assert out["min"] <= out["mean"] <= out["max"]
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    npz = tmp_path / "in.npz"
    name = wb.load(path).input_names[0]
    np.savez(npz, **{name: x})
    c = json.loads(_cli("run", path, "--json", "--data", npz).stdout)
    assert c["input_source"] == str(npz) and c["inputs"][name]["shape"] == [1, 3, 224, 224]  # static batch 1
    assert "min" in _cli("run", path).stdout


SAMPLES = ROOT / "sample_models"


@pytest.mark.parametrize("name", ["digits_cnn.onnx", "transformer_block.onnx", "resize_concat.onnx"])
def test_sample_counts(name):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not generated yet (make samples)")
    ref = onnx.load(str(path))
    info = inspect(path, shapes=None)
    assert info.nodes == len(ref.graph.node)
    assert info.ops == dict(Counter(n.op_type for n in ref.graph.node))
    assert info.params == sum(int(np.prod(t.dims)) for t in ref.graph.initializer) + sum(
        int(np.prod(a.t.dims)) for n in ref.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")
    assert any(isinstance(d, str) for d in info.inputs[0]["shape"])  # dynamic batch is symbolic


def test_sample_transformer_flops_by_hand():
    """2 pre-LN layers, d=64, 4 heads, MLP 4x (see sample_models/make_samples.py): per layer
    4 projections B*S*64*64, fc1/fc2 B*S*64*256 each, QK^T and PV B*H*S*S*16 each."""
    path = SAMPLES / "transformer_block.onnx"
    if not path.exists():
        pytest.skip(f"{path} not generated yet (make samples)")
    B, S, D, H = 2, 16, 64, 4
    info = inspect(path, shapes=f"x:{B}x{S}x{D}")
    assert info.flops_unknown_nodes == 0
    per_layer = B * S * (4 * D * D + 2 * D * 4 * D) + 2 * B * H * S * S * (D // H)
    assert info.macs == 2 * per_layer
    nf = info.nodes_frame()
    assert nf["scope"].str.startswith("/encoder/layer.").any()


def test_dynamic_batch_counts_per_sample_and_says_so(sample):
    """No shapes for a dynamic-batch model: FLOPs per sample (batch 1 assumed), stated in the warnings,
    the text and the JSON; an explicit batch scales them."""
    from workbench import inspect

    path = sample("digits_cnn.onnx")
    info = inspect(path)
    assert info.assumed_batch == {"image": "batch"} and info.flops_unknown_nodes == 0 and info.flops > 0
    assert info.flops == inspect(path, shapes="image:1x1x8x8").flops
    assert inspect(path, shapes="image:32x1x8x8").flops == pytest.approx(32 * info.flops)
    assert any("batch 1 assumed" in w for w in info.warnings)
    assert "batch        1 assumed for image" in info.text()
    assert info.to_json()["per_sample"] is True
    shares = info.nodes_frame().groupby("op_type").flops.sum() / info.flops
    assert shares.notna().all() and shares.sum() == pytest.approx(1.0)  # notebook 01's exercise: no NaN shares
    assert inspect(path, shapes="image:4x1x8x8").assumed_batch == {}
