"""Tests for workbench/precision/__init__.py (issue 23 mutation target ``precision-registry``): the built-in
precision entries, ``list_recipes()`` and ``make_variant``'s argument checks, on small real graphs.

Expected values come from outside the module: the six built-in precision names and tools are the documented
ones (docs/precision.md), fp16's default keep list is onnxconverter-common's own DEFAULT_OP_BLOCK_LIST read
from that package, and outputs are compared with ONNX Runtime runs of the source graph.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import workbench as wb
from workbench.errors import BackendUnavailable, ModelLoadError, UsageError, WorkbenchError
from workbench.precision import (RECIPES, Recipe, list_recipes, make_variant, register_precision,
                                 unregister_precision)

X = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
CALIB = [{"x": np.random.default_rng(i).normal(size=(2, 4)).astype(np.float32)} for i in range(16)]


def _model(name="tiny"):
    w = nh.from_array(np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32), "w")
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["m"], name="mm"), h.make_node("Relu", ["m"], ["y"], name="relu")],
                     name, [h.make_tensor_value_info("x", T.FLOAT, [2, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 4])], initializer=[w])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _run(proto, feeds):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


# ---------------------------------------------------------------------------------------------- table
def test_list_recipes_table():
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    df = list_recipes()
    assert list(df.columns) == ["precision", "tool", "what", "default_keep"]
    assert list(df["precision"])[:6] == ["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]
    rows = df.set_index("precision")
    assert rows.loc["fp32", "tool"] == rows.loc["tf32", "tool"] == "none"
    assert rows.loc["fp16", "tool"] == "onnxconverter-common" and rows.loc["int8", "tool"] == "onnxruntime"
    assert rows.loc["fp32", "what"] == "the model unchanged"
    assert rows.loc["fp32", "default_keep"] == ""  # nothing to keep: a string, not a list
    keep16 = rows.loc["fp16", "default_keep"].split(", ")
    assert keep16[:len(DEFAULT_OP_BLOCK_LIST)] == list(DEFAULT_OP_BLOCK_LIST)
    assert "LayerNormalization" in keep16 and rows.loc["bf16", "default_keep"] == rows.loc["fp16", "default_keep"]


def test_list_recipes_of_an_empty_registry_keeps_its_columns(monkeypatch):
    import workbench.precision as P
    monkeypatch.setattr(P, "RECIPES", {})
    df = list_recipes()
    assert list(df.columns) == ["precision", "tool", "what", "default_keep"] and len(df) == 0


# ---------------------------------------------------------------------------------------------- fp32 / tf32
@pytest.mark.parametrize("precision,tf32", [("fp32", False), ("tf32", True)])
def test_unchanged_precisions(precision, tf32):
    m = wb.load(_model())
    v = make_variant(m, precision, flag="x")
    name = "tf32" if tf32 else "fp32"
    assert v.precision == name and v.name == f"tiny-{name}"
    assert v.backend_flags == {"tf32": tf32}
    assert v.model.hash == m.hash == v.source_hash
    assert v.recipe == {"tool": "none", "tool_version": "", "keep_nodes": [], "keep_op_types": [],
                        "keep_io_types": True, "options": {"flag": "x"}, "kept_high_precision": "all"}
    np.testing.assert_array_equal(_run(v.model.proto, {"x": X}), _run(m.proto, {"x": X}))


def test_unchanged_precision_refuses_keep_lists():
    for kw in ({"keep_nodes": ["relu"]}, {"keep_op_types": ["Relu"]}):
        with pytest.raises(UsageError, match="keeps the whole graph in fp32"):
            make_variant(_model(), "fp32", **kw)
    v = make_variant(_model(), "tf32", keep_io_types=False)
    assert v.recipe["keep_io_types"] is False


def test_builtin_facts():
    assert RECIPES["fp32"].precision == "fp32" and RECIPES["tf32"].summary.startswith("the fp32 graph unchanged")
    assert RECIPES["fp32"].tool == RECIPES["tf32"].tool == "none"


# ---------------------------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("bad", ["fp4", "FP16", ["fp16"], None, 16])
def test_unknown_precision_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="unknown precision"):
        make_variant(_model(), bad)


def test_tool_checks():
    with pytest.raises(UsageError, match="unknown tool"):
        make_variant(_model(), "fp16", tool="tensorrt")
    with pytest.raises(UsageError, match="is made with"):
        make_variant(_model(), "fp16", tool="onnxruntime")
    with pytest.raises(UsageError, match="is made with"):
        make_variant(_model(), "int8", tool="onnxconverter-common", calib=CALIB)
    v = make_variant(_model(), "fp16", tool="onnxconverter-common", progress=False)
    assert v.recipe["tool"] == "onnxconverter-common"
    v = make_variant(_model(), "bf16", tool="onnxconverter-common", progress=False)  # tool "onnxconverter-common+..."
    assert v.precision == "bf16"
    v = make_variant(_model(), "fp32", tool="onnxruntime")  # an unchanged precision takes any known tool
    assert v.recipe["tool"] == "none"
    with pytest.raises(BackendUnavailable, match="modelopt"):
        make_variant(_model(), "fp16", tool="modelopt")


def test_int8_with_its_own_tool_and_a_mixed_case_calibration_method():
    v = make_variant(_model(), "int8", calib=CALIB, tool="onnxruntime", calibration_method="MinMax", num_calib=16,
                     progress=False)
    assert v.recipe["calibration"]["method"] == "minmax" and v.recipe["calibration"]["num_samples"] == 16
    np.testing.assert_allclose(_run(v.model.proto, {"x": X}), _run(_model(), {"x": X}), atol=0.1)
    with pytest.raises(UsageError, match="unknown calibration_method"):
        make_variant(_model(), "int8", calib=CALIB, calibration_method="kl")


def test_num_calib_limits_the_samples():
    v = make_variant(_model(), "int8", calib=CALIB, num_calib=16, min_samples=4, progress=False)
    assert v.recipe["calibration"]["num_samples"] == 16
    v = make_variant(_model(), "int8", calib=CALIB, num_calib=6, min_samples=4, progress=False)
    assert v.recipe["calibration"]["num_samples"] == 6


def test_keep_lists_must_be_lists_of_names():
    with pytest.raises(UsageError, match="not a single string"):
        make_variant(_model(), "fp16", keep_nodes="relu")
    with pytest.raises(UsageError, match="not a single string"):
        make_variant(_model(), "fp16", keep_op_types="Relu")
    with pytest.raises(UsageError):
        make_variant(_model(), "fp16", keep_nodes=[1])
    with pytest.raises(UsageError, match="Relux"):
        make_variant(_model(), "fp16", keep_op_types=["Relux"])
    v = make_variant(_model(), "fp16", keep_nodes=(n for n in ["relu"]), keep_op_types=iter(["MatMul"]), progress=False)
    assert v.recipe["keep_nodes"] == ["relu"] and v.recipe["keep_op_types"] == ["MatMul"]
    assert set(v.recipe["kept_high_precision"]) >= {"relu", "mm"} and v.name == "tiny-fp16-mixed"


def test_keep_io_types_and_options_reach_the_recipe():
    v = make_variant(_model(), "fp16", keep_io_types=0, range_check=False, progress=False)
    assert v.recipe["keep_io_types"] is False and v.recipe["options"] == {"range_check": False}
    assert v.model.proto.graph.input[0].type.tensor_type.elem_type == T.FLOAT16
    v = make_variant(_model(), "fp16", progress=False)
    assert v.recipe["keep_io_types"] is True and v.recipe["options"] == {}
    assert v.model.proto.graph.input[0].type.tensor_type.elem_type == T.FLOAT
    np.testing.assert_allclose(_run(v.model.proto, {"x": X}), _run(_model(), {"x": X}), rtol=1e-2, atol=1e-2)


def test_source_model_is_loaded_from_a_path_and_never_written(tmp_path):
    p = tmp_path / "tiny.onnx"
    onnx.save(_model(), str(p))
    before = p.read_bytes()
    v = make_variant(p, "fp16", progress=False)
    assert v.name == "tiny-fp16" and p.read_bytes() == before


def test_cyclic_graph_is_refused_before_the_recipe():
    g = h.make_graph([h.make_node("Relu", ["b"], ["a"], name="r1"), h.make_node("Relu", ["a"], ["b"], name="r2")],
                     "cyc", [h.make_tensor_value_info("x", T.FLOAT, [1])], [h.make_tensor_value_info("a", T.FLOAT, [1])])
    with pytest.raises(WorkbenchError, match="cycle"):
        make_variant(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), "fp32")


class _Checking(Recipe):
    """A registered precision whose tool lets onnx reject the model (the extension API's error path)."""
    tool = "none"
    summary = "runs onnx's checks on the model"

    def __init__(self, precision, how):
        self.precision, self.how = precision, how

    def apply(self, model, req):
        bad = onnx.ModelProto()
        bad.CopyFrom(model.proto)
        if self.how == "checker":
            bad.graph.node[0].input[1] = "nowhere"  # reads a tensor nothing defines
            onnx.checker.check_model(bad)
        else:
            bad.graph.initializer[0].CopyFrom(nh.from_array(np.ones((4, 4), np.float16), "w"))  # fp32 @ fp16
            onnx.shape_inference.infer_shapes(bad, check_type=True, strict_mode=True)
        raise AssertionError("onnx accepted an invalid model")


@pytest.mark.parametrize("how", ["checker", "inference"])
def test_onnx_rejection_inside_a_recipe_is_a_model_load_error(how):
    register_precision(_Checking("chk8", how), kind="none", color="#000000", roofline_dtype="float32")
    try:
        with pytest.raises(ModelLoadError, match="the chk8 recipe cannot process 'tiny': onnx reports it invalid"):
            make_variant(_model(), "chk8")
    finally:
        unregister_precision("chk8")


def test_progress_flag_reaches_the_calibration_bar(capsys):
    make_variant(_model(), "int8", calib=CALIB)
    assert "calibrating tiny (minmax)" in capsys.readouterr().err  # progress=True is the default
    make_variant(_model(), "int8", calib=CALIB, progress=False)
    assert "calibrating" not in capsys.readouterr().err


def test_a_non_string_keep_entry_names_the_argument():
    with pytest.raises(UsageError, match=r"^keep_nodes takes a list of names \(strings\), got \[1\]"):
        make_variant(_model(), "fp16", keep_nodes=[1])
    with pytest.raises(UsageError, match=r"^keep_op_types takes a list of names \(strings\), got \[2\]"):
        make_variant(_model(), "fp16", keep_op_types=[2])
    with pytest.raises(UsageError, match=r"^keep_nodes takes a list of names, not int"):
        make_variant(_model(), "fp16", keep_nodes=5)


def test_unchanged_variant_of_an_edited_model_names_the_edited_model_as_its_source():
    import workbench.edit as E

    src = wb.load(_model())
    edited = E.cleanup(src)  # a derived model: its parent is the loaded one
    assert edited.parent_hash == src.hash and edited.hash != src.hash
    v = make_variant(edited, "fp32")
    assert v.source_hash == edited.hash
