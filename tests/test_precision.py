"""Precision recipes on real models: digits CNN (real labels), transformer block, light CNNs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import sha256
from workbench import load
from workbench.backends import get_backend
from workbench.data import NpzDataset, synthetic_inputs
from workbench.errors import DataError, UsageError
from workbench.precision import RECIPES, list_recipes, make_variant
from workbench.precision.floating import default_op_block_list
from workbench.variant import PRECISIONS

ORT = get_backend("onnxruntime")


def _run(variant, feeds):
    return ORT.build(variant).run(feeds)


def _cos(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _infer_types(proto):
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.value_info) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


@pytest.fixture
def digits(sample):
    path = sample("digits_cnn.onnx")
    test = sample("digits_test.npz")
    calib = sample("digits_calib.npz")
    return path, test, calib


def _accuracy(variant, test_path):
    m = load(variant.model.proto)
    ds = NpzDataset(test_path, m, label_keys=["label"])
    out = _run(variant, {"image": ds.inputs["image"]})["logits"]
    return float((out.argmax(1) == ds.labels["label"]).mean()), out


# ---------------------------------------------------------------------------------------------- registry
def test_registry_and_table():
    assert tuple(RECIPES) == PRECISIONS
    df = list_recipes()
    assert list(df.columns) == ["precision", "tool", "what", "default_keep"]
    assert list(df["precision"]) == list(PRECISIONS)
    assert "Resize" in df.set_index("precision").loc["fp16", "default_keep"]
    for r in RECIPES.values():
        assert r.describe()["precision"] == r.precision


def test_fp32_tf32_unchanged(digits):
    path, _, _ = digits
    m = load(path)
    v32 = make_variant(m, "fp32")
    vtf = make_variant(path, "tf32")
    assert v32.model.hash == m.hash == vtf.model.hash
    assert v32.backend_flags == {"tf32": False} and vtf.backend_flags == {"tf32": True}
    assert v32.name == "digits_cnn-fp32" and v32.hash != vtf.hash
    with pytest.raises(UsageError):
        make_variant(m, "fp32", keep_op_types=["Gemm"])
    with pytest.raises(UsageError, match="unknown precision"):
        make_variant(m, "int4")


# ---------------------------------------------------------------------------------------------- fp16
def test_fp16_digits_structure_and_accuracy(digits):
    path, test, _ = digits
    v = make_variant(path, "fp16")
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.name == "digits_cnn-fp16" and v.precision == "fp16"
    # I/O stays fp32, every float initializer became fp16 (no node of digits is blocked by default).
    assert p.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert p.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert v.recipe["kept_high_precision"] == []
    float_inits = [i for i in p.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert float_inits and all(i.data_type == TensorProto.FLOAT16 for i in float_inits)
    conv = next(n for n in p.graph.node if n.op_type == "Conv")
    assert _infer_types(p)[conv.input[0]] == TensorProto.FLOAT16
    # ORT CPU runs it (it has fp16 Conv/Gemm kernels or inserts casts); outputs stay close to fp32.
    a16, o16 = _accuracy(v, test)
    a32, o32 = _accuracy(make_variant(path, "fp32"), test)
    assert _cos(o16, o32) > 0.999
    assert abs(a16 - a32) <= 0.01
    assert not np.array_equal(o16, o32)  # it really computed in fp16
    json.dumps(v.to_json())


def test_fp16_keep_lists_stay_fp32(digits):
    path, _, _ = digits
    m = load(path)
    conv3 = next(n.name for n in m.graph.node if n.op_type == "Conv" and "conv3" in n.name)
    v = make_variant(m, "fp16", keep_op_types=["Gemm"], keep_nodes=[conv3])
    assert v.name == "digits_cnn-fp16-mixed"
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    types = _infer_types(p)
    kept = [n for n in p.graph.node if n.op_type == "Gemm" or n.name == conv3]
    assert len(kept) == 3
    for n in kept:
        assert all(types[x] == TensorProto.FLOAT for x in n.input if x), n.name
        assert all(types[x] == TensorProto.FLOAT for x in n.output), n.name
    others = [n for n in p.graph.node if n.op_type == "Conv" and n.name != conv3]
    assert others and all(types[n.input[1]] == TensorProto.FLOAT16 for n in others)
    assert sorted(v.recipe["kept_high_precision"]) == sorted(n.name for n in kept)
    assert "Gemm" in v.recipe["op_block_list"] and conv3 in v.recipe["node_block_list"]
    feeds = synthetic_inputs(m, batch=4)
    assert _cos(_run(v, feeds)["logits"], _run(make_variant(m, "fp32"), feeds)["logits"]) > 0.999


def test_fp16_without_keep_io_types(digits):
    path, _, _ = digits
    v = make_variant(path, "fp16", keep_io_types=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert p.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert p.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    x = np.load(path.parent / "digits_test.npz")["image"][:8]
    out = _run(v, {"image": x.astype(np.float16)})["logits"]
    assert out.dtype == np.float16
    assert _cos(out, _run(make_variant(path, "fp32"), {"image": x})["logits"]) > 0.999


def test_keep_nodes_unknown_name_lists_close_matches(digits):
    path, _, calib = digits
    for prec, kw in (("fp16", {}), ("int8", {"calib": calib})):
        with pytest.raises(UsageError, match="conv2"):
            make_variant(path, prec, keep_nodes=["/features/conv2/Cnv"], **kw)


def test_fp16_transformer_block(sample):
    path = sample("transformer_block.onnx")
    m = load(path)
    v = make_variant(m, "fp16")
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    types = _infer_types(p)
    mm = [n for n in p.graph.node if n.op_type == "MatMul"]
    assert mm and all(types[n.input[0]] == TensorProto.FLOAT16 for n in mm)
    feeds = synthetic_inputs(m, {"x": (2, 16, 64)})
    assert _cos(_run(v, feeds)["y"], _run(make_variant(m, "fp32"), feeds)["y"]) > 0.999


def _decomposed_layernorm() -> onnx.ModelProto:
    """LayerNorm exported op by op: mean, center, Pow 2, ReduceMean, Add eps, Sqrt, Div."""
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes")]
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mu"], name="mean"),
             helper.make_node("Sub", ["x", "mu"], ["d"], name="center"),
             helper.make_node("Pow", ["d", "two"], ["d2"], name="square"),
             helper.make_node("ReduceMean", ["d2", "axes"], ["var"], name="var"),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"),
             helper.make_node("Div", ["d", "sd"], ["y"], name="normalize")]
    g = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_fp16_keeps_normalization_variance_in_fp32(sample):
    """Evidence for the default keep list, computed in real fp16 arithmetic by the ONNX reference
    evaluator (ORT CPU would insert fp32 casts): squares of activations ~300 overflow fp16."""
    from onnx.reference import ReferenceEvaluator

    m = load(_decomposed_layernorm(), name="ln")
    x = (np.random.default_rng(0).standard_normal((4, 64)) * 300).astype(np.float32)
    ref = ReferenceEvaluator(m.proto).run(None, {"x": x})[0]
    v = make_variant(m, "fp16")
    assert set(v.recipe["norm_kept"]) == {"square", "var", "add_eps", "sqrt", "normalize"}
    got = ReferenceEvaluator(v.model.proto).run(None, {"x": x})[0].astype(np.float32)
    assert np.abs(got - ref).max() < 0.01
    off = make_variant(m, "fp16", keep_norms=False)
    assert off.recipe["norm_kept"] == {}
    bad = ReferenceEvaluator(off.model.proto).run(None, {"x": x})[0].astype(np.float32)
    assert np.abs(bad - ref).max() > 0.5

    tb = load(sample("transformer_block.onnx"))
    x = (np.random.default_rng(0).standard_normal((2, 32, 64)) * 30).astype(np.float32)
    ref = ReferenceEvaluator(tb.proto).run(None, {"x": x})[0]
    kept = make_variant(tb, "fp16")
    assert any("LayerNormalization" in n for n in kept.recipe["kept_high_precision"])
    assert _cos(ReferenceEvaluator(kept.model.proto).run(None, {"x": x})[0], ref) > 0.999
    loose = make_variant(tb, "fp16", keep_norms=False)
    assert _cos(ReferenceEvaluator(loose.model.proto).run(None, {"x": x})[0], ref) < 0.99


def _range_model() -> onnx.ModelProto:
    """y = x * 1e5 + x @ W: a constant beyond fp16's range, and a weight W."""
    big = numpy_helper.from_array(np.array(1e5, np.float32), "big")
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "W")
    nodes = [helper.make_node("Mul", ["x", "big"], ["xs"], name="scale_up"),
             helper.make_node("MatMul", ["x", "W"], ["xw"], name="proj"),
             helper.make_node("Add", ["xs", "xw"], ["y"], name="sum")]
    g = helper.make_graph(nodes, "range", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [big, w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_fp16_keeps_out_of_range_constants_in_fp32():
    m = load(_range_model(), name="range")
    v = make_variant(m, "fp16")
    assert set(v.recipe["range_kept"]) == {"scale_up"}
    inits = {i.name: i.data_type for i in v.model.proto.graph.initializer}
    assert inits["big"] == TensorProto.FLOAT and inits["W"] == TensorProto.FLOAT16
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    ref = _run(make_variant(m, "fp32"), {"x": x})["y"]
    got = _run(v, {"x": x})["y"]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-3
    # Without the range check the converter clamps 1e5 to 65504: a 35% error.
    with pytest.warns(UserWarning, match="truncated"):
        clamped = _run(make_variant(m, "fp16", range_check=False), {"x": x})["y"]
    assert np.abs(clamped - ref).max() / np.abs(ref).max() > 0.3


def test_fp16_shared_initializer_type_clash_is_repaired():
    """W feeds a kept (fp32) node and a converted one: the converter leaves W fp32 and the converted
    MatMul gets an fp32 input; the repair pass inserts a Cast."""
    from onnxconverter_common import float16

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"], name="mm_kept"),
             helper.make_node("MatMul", ["x", "W"], ["b"], name="mm_half"),
             helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    g = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    raw = float16.convert_float_to_float16(onnx.ModelProto.FromString(proto.SerializeToString()),
                                           keep_io_types=True, node_block_list=["mm_kept"])
    with pytest.raises(Exception):  # the pitfall is real with the converter alone
        onnx.checker.check_model(raw, full_check=True)
    v = make_variant(proto, "fp16", keep_nodes=["mm_kept"])
    onnx.checker.check_model(v.model.proto, full_check=True)
    assert v.recipe["repair_casts"]
    x = np.ones((2, 8), np.float32)
    assert _cos(_run(v, {"x": x})["y"], _run(make_variant(proto, "fp32"), {"x": x})["y"]) > 0.999


def test_fp16_light_resnet50_initializer_inputs(light):
    """IR-3 style model (initializers listed as inputs, unnamed nodes)."""
    v = make_variant(light("resnet50"), "fp16")
    onnx.checker.check_model(v.model.proto, full_check=True)
    assert len({n.name for n in v.model.proto.graph.node}) == len(v.model.proto.graph.node)


# ---------------------------------------------------------------------------------------------- bf16
@pytest.mark.parametrize("name", ["digits_cnn.onnx", "transformer_block.onnx"])
def test_bf16_structure(sample, name):
    path = sample(name)
    v = make_variant(path, "bf16")
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    onnx.shape_inference.infer_shapes(p, check_type=True, strict_mode=True)
    assert v.precision == "bf16" and v.recipe["retyped_tensors"] > 0
    kept = set(v.recipe["kept_high_precision"]) | set(v.recipe["fp32_no_bf16_in_opset"])
    types = _infer_types(p)
    assert not any(t == TensorProto.FLOAT16 for t in types.values())
    for n in p.graph.node:
        if n.op_type in ("Conv", "MatMul", "Gemm") and n.name not in kept:
            assert types[n.input[1]] == TensorProto.BFLOAT16, n.name
    assert p.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # Initializer values are the fp32 originals rounded to bf16 (not clamped through fp16).
    src = {i.name: numpy_helper.to_array(i) for i in load(path).proto.graph.initializer}
    for i in p.graph.initializer:
        if i.data_type == TensorProto.BFLOAT16 and i.name in src:
            got = numpy_helper.to_array(i).astype(np.float32)
            np.testing.assert_allclose(got, src[i.name], rtol=2 ** -7, atol=1e-30)


# ---------------------------------------------------------------------------------------------- int8
def _qdq_facts(proto):
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    prod = _producers(proto)
    return inits, prod


def test_int8_digits_qdq_placement_and_accuracy(digits):
    path, test, calib = digits
    v = make_variant(path, "int8", calib=calib, progress=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    inits, prod = _qdq_facts(p)
    weighted = [n for n in p.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(weighted) == 5
    for n in weighted:
        x_dq, w_dq = prod[n.input[0]], prod[n.input[1]]
        assert x_dq.op_type == "DequantizeLinear" and prod[x_dq.input[0]].op_type == "QuantizeLinear"
        assert w_dq.op_type == "DequantizeLinear"
        w_q = inits[w_dq.input[0]]
        assert w_q.dtype == np.int8
        axis = next(a.i for a in w_dq.attribute if a.name == "axis")
        scale = inits[w_dq.input[1]]
        out_channels = w_q.shape[axis]
        assert scale.shape == (out_channels,) and out_channels > 1
        if len(n.input) > 2:  # bias stays fp32 (TensorRT fuses it)
            assert n.input[2] in inits and inits[n.input[2]].dtype == np.float32
    zps = [inits[n.input[2]] for n in p.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2]
    assert zps and all(np.all(z == 0) for z in zps)
    rec = v.recipe
    assert rec["calibration"]["method"] == "minmax" and rec["calibration"]["num_samples"] == 256
    assert rec["calibration"]["synthetic"] is False and rec["per_channel"] and rec["symmetric"]
    json.dumps(v.to_json())
    a8, _ = _accuracy(v, test)
    a32, _ = _accuracy(make_variant(path, "fp32"), test)
    assert a8 >= a32 - 0.01, (a8, a32)


def test_int8_keep_lists(digits):
    path, _, calib = digits
    v = make_variant(path, "int8", calib=calib, keep_op_types=["Gemm"], num_calib=32, progress=False)
    assert v.name == "digits_cnn-int8-mixed"
    _, prod = _qdq_facts(v.model.proto)
    gemms = [n for n in v.model.proto.graph.node if n.op_type == "Gemm"]
    convs = [n for n in v.model.proto.graph.node if n.op_type == "Conv"]
    assert all(prod.get(x) is None or prod[x].op_type != "DequantizeLinear" for n in gemms for x in n.input[:2])
    assert all(prod[n.input[1]].op_type == "DequantizeLinear" for n in convs)
    assert "Gemm" not in v.recipe["op_types_to_quantize"]
    assert sorted(v.recipe["kept_high_precision"]) == sorted(n.name for n in gemms)
    assert v.recipe["calibration"]["num_samples"] == 32

    conv2 = next(n.name for n in convs if "conv2" in n.name)
    v2 = make_variant(path, "int8", calib=calib, keep_nodes=[conv2], num_calib=32, progress=False)
    _, prod2 = _qdq_facts(v2.model.proto)
    node = next(n for n in v2.model.proto.graph.node if n.name == conv2)
    assert node.input[1] not in prod2 and prod2[node.input[0]].op_type != "DequantizeLinear"
    assert v2.recipe["kept_high_precision"] == [conv2]


def test_int8_calibration_method_changes_scales(digits):
    path, _, calib = digits

    def act_scales(method, **kw):
        v = make_variant(path, "int8", calib=calib, calibration_method=method, num_calib=64, progress=False, **kw)
        inits, _ = _qdq_facts(v.model.proto)
        return v, {n.input[1]: float(inits[n.input[1]]) for n in v.model.proto.graph.node if n.op_type == "QuantizeLinear"}

    vm, mm = act_scales("minmax")
    vp, pc = act_scales("percentile")
    ve, en = act_scales("entropy", calibrator_options={"num_bins": 512})
    assert mm.keys() == pc.keys() == en.keys()
    assert any(not np.isclose(mm[k], pc[k]) for k in mm)
    assert any(not np.isclose(mm[k], en[k]) for k in mm)
    # Clipping methods never widen the min/max range.
    assert all(pc[k] <= mm[k] * (1 + 1e-6) and en[k] <= mm[k] * (1 + 1e-6) for k in mm)
    assert ve.recipe["calibration"]["calibrator_options"]["num_bins"] == 512


def test_int8_without_calibration_cache_support(digits, monkeypatch):
    """Older onnxruntime (no calibration_cache_path): quantize_static calibrates with its defaults."""
    import workbench.precision.quantize as q
    monkeypatch.setattr(q, "_has_calibration_cache", lambda: False)
    path, _, calib = digits
    v = make_variant(path, "int8", calib=calib, num_calib=32, progress=False)
    assert "no calibrator options" in v.recipe["calibration"]["calibrator_options"]["note"]
    assert sum(n.op_type == "QuantizeLinear" for n in v.model.proto.graph.node) >= 5


def test_int8_light_squeezenet_synthetic(light):
    """Opset-9, IR-3 model with weights behind ConstantOfShape: pre-processing folds them, opset → 13."""
    v = make_variant(light("squeezenet"), "int8", calib="synthetic", num_calib=16, progress=False)
    assert v.recipe["calibration"]["synthetic"] is True and v.recipe["calibration"]["source"] == "synthetic"
    assert v.recipe["opset_upgrade"] == {"from": 9, "to": 13} and v.recipe["preprocess"]["applied"]
    ops = [n.op_type for n in v.model.proto.graph.node]
    assert ops.count("QuantizeLinear") > 20


# ---------------------------------------------------------------------------------------------- bad data
@pytest.fixture
def spy_quantizer(monkeypatch):
    import onnxruntime.quantization as oq
    import onnxruntime.quantization.calibrate as oc
    import functools
    calls = []

    def spy(name, real):
        @functools.wraps(real)  # keeps the signature the recipe inspects
        def wrapper(*a, **k):
            calls.append(name)
            return real(*a, **k)
        return wrapper

    monkeypatch.setattr(oq, "quantize_static", spy("quantize", oq.quantize_static))
    monkeypatch.setattr(oc, "create_calibrator", spy("calibrate", oc.create_calibrator))
    return calls


def test_bad_calibration_data_fails_before_quantizing(digits, tmp_path, spy_quantizer):
    path, _, calib = digits
    image = np.load(calib)["image"]
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = {
        "wrong_name.npz": ({"img": image}, "image"),
        "wrong_shape.npz": ({"image": image.reshape(-1, 1, 4, 16)}, "dim 2"),
        "wrong_dtype.npz": ({"image": (image * 16).astype(np.int32)}, "dtype"),
        "too_few.npz": ({"image": image[:5]}, "5 sample"),  # refused when --min-calib-samples asks for more
        "nan.npz": ({"image": np.where(np.arange(image.size).reshape(image.shape) == 7, np.nan, image)
                     .astype(np.float32)}, "NaN"),
    }
    for fname, (arrays, msg) in cases.items():
        f = tmp_path / fname
        np.savez(f, **arrays)
        with pytest.raises(DataError, match=msg):
            make_variant(path, "int8", calib=f, progress=False, min_samples=16)
    with pytest.raises(DataError, match="needs data"):
        make_variant(path, "int8", progress=False)
    with pytest.raises(DataError, match="lacks input"):
        make_variant(path, "int8", calib=[{"x": image[:8]}] * 4, progress=False)
    with pytest.raises(DataError, match="3 sample"):
        make_variant(path, "int8", calib=[{"image": image[:1]}] * 3, progress=False, min_samples=4)
    with pytest.raises(DataError, match="NaN"):
        bad = image[:16].copy()
        bad[0, 0, 0, 0] = np.inf
        make_variant(path, "fp8", calib=[{"image": bad}], progress=False)
    assert spy_quantizer == []
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(after) - set(before) == set(cases)  # only the files this test wrote


def test_min_samples_option(digits, spy_quantizer):
    path, _, calib = digits
    image = np.load(calib)["image"]
    v = make_variant(path, "int8", calib=[{"image": image[:4]}], min_samples=4, progress=True)
    assert v.recipe["calibration"]["num_samples"] == 4 and v.recipe["options"]["min_samples"] == 4
    assert spy_quantizer == ["calibrate", "quantize"]


def test_few_calibration_samples_warn_with_the_count(digits, spy_quantizer):
    """Fewer samples than the default minimum (16) calibrate, with a warning naming the count (issue 13)."""
    from workbench.precision.calibration import CalibrationWarning

    path, _, calib = digits
    image = np.load(calib)["image"]
    with pytest.warns(CalibrationWarning, match=r"only 5 sample\(s\) \(fewer than 16\)"):
        v = make_variant(path, "int8", calib=[{"image": image[:5]}], progress=False)
    assert v.recipe["calibration"]["num_samples"] == 5
    assert spy_quantizer == ["calibrate", "quantize"]


def test_int8_onnxruntime_cpu_target(digits):
    """uint8 asymmetric activations + int32 bias: ORT CPU's fast form (not TensorRT's)."""
    path, test, calib = digits
    v = make_variant(path, "int8", calib=calib, num_calib=64, target="onnxruntime-cpu", progress=False)
    inits, prod = _qdq_facts(v.model.proto)
    conv = next(n for n in v.model.proto.graph.node if n.op_type == "Conv")
    x_dq = prod[conv.input[0]]
    assert inits[x_dq.input[2]].dtype == np.uint8
    assert inits[prod[conv.input[1]].input[0]].dtype == np.int8
    assert prod[conv.input[2]].op_type == "DequantizeLinear" and inits[prod[conv.input[2]].input[0]].dtype == np.int32
    assert v.recipe["target"] == "onnxruntime-cpu" and v.recipe["activation_type"] == "QUInt8"
    assert v.recipe["symmetric"] is False
    a8, _ = _accuracy(v, test)
    a32, _ = _accuracy(make_variant(path, "fp32"), test)
    assert a8 >= a32 - 0.01
    with pytest.raises(UsageError, match="target"):
        make_variant(path, "int8", calib=calib, target="tpu", progress=False)


# ---------------------------------------------------------------------------------------------- fp8
def test_fp8_structure(digits):
    path, _, calib = digits
    v = make_variant(path, "fp8", calib=calib, num_calib=32, progress=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.recipe["calibration"]["method"] == "distribution"
    inits = {i.name: i for i in p.graph.initializer}
    prod = _producers(p)
    convs = [n for n in p.graph.node if n.op_type == "Conv"]
    for n in convs:
        dq = prod[n.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert inits[dq.input[0]].data_type == TensorProto.FLOAT8E4M3FN
    zps = [inits[n.input[2]] for n in p.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.data_type == TensorProto.FLOAT8E4M3FN for z in zps)
    ok, why = ORT.supports("fp8")
    assert not ok and "FP8" in why
    with pytest.raises(UsageError, match="distribution"):
        make_variant(path, "fp8", calib=calib, calibration_method="entropy", progress=False)


# ---------------------------------------------------------------------------------------------- tools / source
def test_modelopt_tool_is_guarded(digits):
    import importlib.util
    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("ModelOpt is installed here; the guard is for its absence")
    from workbench.errors import BackendUnavailable
    path, _, calib = digits
    with pytest.raises(BackendUnavailable, match="modelopt"):
        make_variant(path, "fp16", tool="modelopt")
    with pytest.raises(BackendUnavailable, match="modelopt"):
        make_variant(path, "int8", calib=calib, tool="modelopt", progress=False)
    with pytest.raises(UsageError, match="unknown tool"):
        make_variant(path, "fp16", tool="tensorrt")


def test_source_model_unchanged(digits, light):
    path, _, calib = digits
    folder = sorted(p.name for p in path.parent.iterdir())
    before = sha256(path)
    for prec in PRECISIONS:
        kw = {"calib": calib, "num_calib": 16, "progress": False} if prec in ("int8", "fp8") else {}
        make_variant(path, prec, **kw)
    assert sha256(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == folder


def test_default_block_list_is_the_converters():
    from onnxconverter_common import float16
    assert set(float16.DEFAULT_OP_BLOCK_LIST) <= set(default_op_block_list())


@pytest.mark.rtx
@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "fp8"])
def test_tensorrt_rtx_parses_and_builds_variants(digits, precision):
    """TensorRT-RTX (strongly typed, builds on CPU) accepts every graph-typed variant of the digits CNN."""
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed: pip install 'trt-workbench[trt-rtx]'")
    path, _, calib = digits
    kw = {"calib": calib, "num_calib": 32, "progress": False} if precision in ("int8", "fp8") else {}
    v = make_variant(path, precision, **kw)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(v.model.proto.SerializeToString())
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 1, 8, 8), (32, 1, 8, 8), (64, 1, 8, 8))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 0
