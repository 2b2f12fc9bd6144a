"""Control flow resolved before TensorRT-family builds (issue #13: TensorRT-RTX's native
``graphScope.cpp ... kUNDEFINED`` assertion on the silero VAD If graphs).

Synthetic graphs carry each pattern real exports write (TorchScript's ``squeeze(dim)`` as
``If(shape[dim] == 1)``, a rank test ``Size(Shape(x)) == 2``, a sample-rate switch ``If(sr == 16000)``, nested
Ifs reading branch-local tensors); the real silero graphs build
with TensorRT-RTX on CPU (skipped without the corpus cache or tensorrt_rtx).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import workbench as wb
from workbench.edit.controlflow import condition_inputs, fold_control_flow
from workbench.errors import UsageError, WorkbenchWarning
from workbench.precision.validity import strict_problems
from workbench.shapes import resolve_control_flow

REAL = Path(os.environ.get("WB_REALMODELS_CACHE", Path.home() / ".cache/trt-workbench/realmodels"))
RNG = np.random.default_rng(0)
SILERO_SHAPES = "input:1x576/4x576/8x576,state:2x1x128/2x4x128/2x8x128"


def _c(name, value):
    return h.make_node("Constant", [], [name], name=f"{name}_const", value=nh.from_array(np.asarray(value)))


def vad_like() -> onnx.ModelProto:
    """x [batch, T]; sr scalar int64. Main graph: Relu(x) = a. ``If_sr`` (sr == 16000) → then: ``If_sq``
    (TorchScript squeeze: a.shape[-1] == 1 → Squeeze else Identity) nested inside, reading ``a`` (outer) and
    the branch-local ``b``. else: x * 0.5. ``If_rank`` on Size(Shape(y)) == 2 (a rank test) picks Neg.
    Output z [batch, T]."""
    out = lambda n, shape=None: h.make_tensor_value_info(n, T.FLOAT, shape)  # noqa: E731
    sq_then = h.make_graph([_c("ax", np.array([-1], np.int64)), h.make_node("Squeeze", ["b", "ax"], ["s"], name="sq")],
                           "sq_then", [], [out("s")])
    sq_else = h.make_graph([h.make_node("Identity", ["b"], ["i"], name="sq_id")], "sq_else", [], [out("i")])
    then_nodes = [h.make_node("Mul", ["a", "a"], ["b"], name="then_mul"),
                  h.make_node("Shape", ["a"], ["shp"], name="then_shape"), _c("last", np.array(-1, np.int64)),
                  h.make_node("Gather", ["shp", "last"], ["d"], name="then_gather", axis=0),
                  _c("one", np.array(1, np.int64)), h.make_node("Equal", ["d", "one"], ["is1"], name="then_eq"),
                  h.make_node("If", ["is1"], ["sq_out"], name="If_sq", then_branch=sq_then, else_branch=sq_else),
                  h.make_node("Add", ["sq_out", "a"], ["a2"], name="then_add")]
    then_g = h.make_graph(then_nodes, "sr_then", [], [out("a2")])
    else_g = h.make_graph([_c("half", np.array(0.5, np.float32)), h.make_node("Mul", ["x", "half"], ["e"], name="else_mul")],
                          "sr_else", [], [out("e")])
    rank_then = h.make_graph([h.make_node("Neg", ["y"], ["n"], name="rank_neg")], "rank_then", [], [out("n")])
    rank_else = h.make_graph([h.make_node("Identity", ["y"], ["m"], name="rank_id")], "rank_else", [], [out("m")])
    nodes = [h.make_node("Relu", ["x"], ["a"], name="relu"),
             h.make_node("Sigmoid", ["x"], ["a3"], name="main_a3"),
             _c("k16", np.array(16000, np.int64)), h.make_node("Equal", ["sr", "k16"], ["is16"], name="sr_eq"),
             h.make_node("If", ["is16"], ["y0"], name="If_sr", then_branch=then_g, else_branch=else_g),
             h.make_node("Add", ["y0", "a3"], ["y"], name="plus_a3"),
             h.make_node("Shape", ["y"], ["ys"], name="y_shape"), h.make_node("Size", ["ys"], ["rank"], name="y_rank"),
             _c("two", np.array(2, np.int64)), h.make_node("Equal", ["rank", "two"], ["is2"], name="rank_eq"),
             h.make_node("If", ["is2"], ["z"], name="If_rank", then_branch=rank_then, else_branch=rank_else)]
    g = h.make_graph(nodes, "vad_like", [h.make_tensor_value_info("x", T.FLOAT, ["batch", "T"]),
                                         h.make_tensor_value_info("sr", T.INT64, [])],
                     [h.make_tensor_value_info("z", T.FLOAT, ["batch", "T"])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    return m


def _run(proto, feeds):
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def test_condition_inputs_tell_values_from_dims():
    p = vad_like()
    deps = {n.name: condition_inputs(p, n) for n in p.graph.node if n.op_type == "If"}
    assert deps == {"If_sr": ["sr"], "If_rank": ["shape:x", "sr"]}


@pytest.mark.parametrize("T_len", [5, 1])
def test_fold_inlines_every_if_exactly(T_len):
    src = vad_like()
    m = wb.load(src)
    fm, rep = fold_control_flow(m, freeze={"sr": 16000}, fixed_dims={"x": {1: T_len}})
    p = fm.proto
    assert not [n for n in p.graph.node if n.op_type == "If"] and rep["remaining"] == []
    assert [d["node"] for d in rep["inlined"]][:1] == ["If_sr"] and len(rep["inlined"]) == 3
    assert rep["frozen"] == {"sr": 16000} and rep["fixed_dims"] == {"x": {1: T_len}}
    assert [i.name for i in p.graph.input] == ["x"] and strict_problems(p) == []
    assert m.proto.SerializeToString() == src.SerializeToString()  # the source is never touched
    for batch in (1, 3):
        x = RNG.normal(size=(batch, T_len)).astype(np.float32)
        np.testing.assert_array_equal(_run(p, {"x": x}), _run(src, {"x": x, "sr": np.array(16000, np.int64)}))


def test_fold_without_freeze_keeps_value_conditions_and_says_why():
    m = wb.load(vad_like())
    fm, rep = fold_control_flow(m, fixed_dims={"x": {1: 5}})
    assert fm is m and rep["inlined"] == []
    assert {r["node"]: r["depends_on"] for r in rep["remaining"]} == {"If_sr": ["sr"], "If_rank": ["shape:x", "sr"]}


def test_freeze_errors_are_one_clear_line():
    m = wb.load(vad_like())
    with pytest.raises(UsageError, match="srr.*sr"):
        fold_control_flow(m, freeze={"srr": 16000})
    with pytest.raises(UsageError, match="has shape \\[\\]; the value has shape \\[2\\]"):
        fold_control_flow(m, freeze={"sr": [1, 2]})
    with pytest.raises(UsageError, match="int64; 16000.5 is not an integer"):
        fold_control_flow(m, freeze={"sr": 16000.5})


def test_resolve_control_flow_freezes_the_single_tested_value_and_warns():
    v = wb.make_variant(vad_like(), "fp32", progress=False)
    with pytest.warns(WorkbenchWarning, match=r"froze input 'sr' = 16000 .*compared with 16000.*--freeze sr=VALUE"):
        nv, rep = resolve_control_flow(v, "x:1x5/2x5/4x5")
    assert rep["frozen_automatically"].keys() == {"sr"} and nv.recipe["frozen_inputs"] == {"sr": 16000}
    assert nv.recipe["control_flow"]["remaining"] == [] and not any(n.op_type == "If" for n in nv.model.proto.graph.node)
    # an explicit value wins, and no warning: the user chose it
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkbenchWarning)
        nv8, rep8 = resolve_control_flow(v, "x:1x5/2x5/4x5", freeze={"sr": 8000})
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_array_equal(_run(nv8.model.proto, {"x": x}), _run(vad_like(), {"x": x, "sr": np.array(8000)}))
    assert rep8["inlined"][0] == {"node": "If_sr", "branch": "else_branch"}


def test_resolve_control_flow_leaves_a_dynamic_condition_and_names_it():
    v = wb.make_variant(vad_like(), "fp32", progress=False)
    nv, rep = resolve_control_flow(v, "x:1x1/2x5/4x9", freeze={"sr": 16000})  # T varies: If_sq stays
    left = {r["node"]: r["depends_on"] for r in rep["remaining"]}
    assert left == {"If_sq": ["shape:x"], "If_rank": ["shape:x"]}  # the rank of y follows If_sq
    x = RNG.normal(size=(2, 7)).astype(np.float32)
    np.testing.assert_array_equal(_run(nv.model.proto, {"x": x}), _run(vad_like(), {"x": x, "sr": np.array(16000)}))


def test_no_control_flow_no_change(sample):
    v = wb.make_variant(sample("digits_cnn.onnx"), "fp32", progress=False)
    nv, rep = resolve_control_flow(v, None)
    assert nv is v and rep == {}


def test_int8_qdq_survives_folding():
    calib = [{"x": RNG.normal(size=(2, 5)).astype(np.float32), "sr": np.array(16000, np.int64)} for _ in range(16)]
    src = vad_like()
    w = nh.from_array(RNG.normal(size=(5, 5)).astype(np.float32), "w")  # one MatMul in the main graph to quantize
    src.graph.initializer.append(w)
    z = src.graph.output[0]
    src.graph.node[-1].output[0] = "z0"
    src.graph.node.append(h.make_node("MatMul", ["z0", "w"], [z.name], name="mm"))
    v = wb.make_variant(src, "int8", calib=calib, progress=False, target="tensorrt")
    n_dq = sum(n.op_type == "DequantizeLinear" for n in v.model.proto.graph.node)
    nv, _ = resolve_control_flow(v, "x:1x5/2x5/4x5", freeze={"sr": 16000})
    assert n_dq > 0 and sum(n.op_type == "DequantizeLinear" for n in nv.model.proto.graph.node) == n_dq
    assert strict_problems(nv.model.proto) == []


# ---------------------------------------------------------------------------------------------- TensorRT-RTX
def _real(name):
    p = REAL / "models" / f"{name}.onnx"
    if not p.exists():
        pytest.skip(f"real model {name} not in {REAL} (python realmodels/fetch.py)")
    return p


@pytest.mark.rtx
def test_silero_if_graphs_build_with_tensorrt_rtx(tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx not installed (extra trt-rtx)")
    from workbench.backends.base import BuildOptions
    from workbench.builds import build_engine
    from workbench.errors import RunError

    # op15: every If folds from the profile alone (fixed 576-sample window, state dims) - nothing frozen
    bs = wb.build_variants(_real("silero_vad_op15"), ["fp32"], "tensorrt-rtx", shapes=SILERO_SHAPES, progress=False)
    r = bs["fp32"]
    assert r.ok, r.reason
    cf = r.record.options["applied"]["control_flow"]
    assert cf["remaining"] == [] and cf["frozen"] == {} and len(cf["inlined"]) == 6
    # v6: the whole model sits in If(sr == 16000): sr is frozen to the one value the graph tests, with a warning
    with pytest.warns(WorkbenchWarning, match="froze input 'sr' = 16000"):
        v, eng = build_engine(_real("silero_vad_v6"), "fp32", "tensorrt-rtx", shapes=SILERO_SHAPES, progress=False)
    assert eng.nbytes > 0 and eng.variant.recipe["frozen_inputs"] == {"sr": 16000} and "sr" not in v.recipe.get("frozen_inputs", {})
    # the engine refuses another sample rate instead of answering for 16000 (checked before any GPU work)
    feeds = {"input": np.zeros((1, 576), np.float32), "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(8000)}
    with pytest.raises(RunError, match="'sr' was frozen to 16000"):
        eng.run(feeds)
    # without the pre-pass: the native assertion, and the hint says what the conditions depend on
    bs = wb.build_variants(_real("silero_vad_v6"), ["fp32"], "tensorrt-rtx", shapes=SILERO_SHAPES, progress=False,
                           options=BuildOptions(progress=False, extra={"fold_control_flow": False}))
    assert bs["fp32"].status == "failed" and "kUNDEFINED" in bs["fp32"].reason
    assert "If_0 (If)" in bs["fp32"].reason


def test_cli_freeze_bad_value_is_one_line(tmp_path, capsys):
    from workbench.cli import main

    rc = main(["build", str(_real("silero_vad_v6")), "--backend", "onnxruntime", "--precision", "fp32",
               "--freeze", "sr=fast", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "bad --freeze value 'fast' for 'sr'" in err[0]


def test_cli_freeze_needs_a_tensorrt_backend(tmp_path, capsys):
    from workbench.cli import main

    rc = main(["build", str(_real("silero_vad_v6")), "--backend", "onnxruntime", "--precision", "fp32",
               "--freeze", "sr=16000", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--freeze applies to TensorRT backends" in err[0]
    assert not (tmp_path / "o").exists()  # refused before any work
