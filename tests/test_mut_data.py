"""Tests written against mutants of workbench/data.py that survived `make mutate` (issue 23): the ``--shapes``
syntax, shape ranges, input specs, shape resolution against a model, and the batch bookkeeping helpers.

Models are built here by hand (an input with fixed, symbolic and unknown dims), so each expected shape is
known before the call; the parse results are compared with tuples written out in the test.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench import data as D
from workbench.data import ShapeMap, ShapeRange
from workbench.errors import ShapeSpecError


def test_parse_one_and_three_shapes():
    sm = ShapeMap.parse(" a : 1x3X8x8 , b:1x4/2x4/8x4, s:scalar, e: ")
    assert list(sm) == ["a", "b", "s", "e"]
    assert sm["a"] == ShapeRange((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8)) and sm["a"].fixed
    assert sm["b"] == ShapeRange((1, 4), (2, 4), (8, 4)) and not sm["b"].fixed
    assert sm["s"].opt == () and sm["e"].opt == ()
    assert sm.to_spec() == "a:1x3x8x8,b:1x4/2x4/8x4,s:,e:"
    assert sm.to_json()["b"] == {"min": [1, 4], "opt": [2, 4], "max": [8, 4]}
    assert ShapeMap.parse("ns::x:2x2")["ns::x"].opt == (2, 2)  # the name may hold ':'; the last one splits
    assert ShapeMap.parse("a:0x3")["a"].opt == (0, 3)
    assert ShapeMap.parse(None) == {} and ShapeMap.parse("") == {} and ShapeMap.parse(",,") == {}
    assert ShapeMap.parse(sm) is sm


def test_range_fixed_needs_all_three_equal():
    assert not ShapeRange((1,), (1,), (2,)).fixed and not ShapeRange((1,), (2,), (2,)).fixed
    assert ShapeRange((1,), (2,), (2,)).to_spec() == "1/2/2"
    assert ShapeRange((), (), ()).fixed


def test_parse_mapping_forms():
    sm = ShapeMap.parse({"a": [1, 3], "b": ((1, 2), (2, 2), (4, 2)), "c": "2x2/3x2/4x2", "d": ShapeRange((1,), (1,), (1,)),
                         "e": np.array([5, 6]), "f": []})
    assert sm["a"] == ShapeRange((1, 3), (1, 3), (1, 3)) and sm["b"] == ShapeRange((1, 2), (2, 2), (4, 2))
    assert sm["c"].max == (4, 2) and sm["d"].opt == (1,) and sm["e"].opt == (5, 6) and sm["f"].opt == ()
    assert type(sm["e"].opt[0]) is int
    with pytest.raises(ShapeSpecError, match="give one shape or three"):
        ShapeMap.parse({"a": [(1,), (2,)]})
    with pytest.raises(ShapeSpecError, match="bad shapes"):
        ShapeMap.parse({"a": ["x"]})
    with pytest.raises(ShapeSpecError, match="bad shapes"):
        ShapeMap.parse({"a": 3})
    with pytest.raises(ShapeSpecError, match="not int"):
        ShapeMap.parse(3)


@pytest.mark.parametrize("spec,msg", [
    ("a", "expected NAME:DIMS"), (":1x2", "empty input name"), ("a:1,a:2", "names 'a' twice"),
    ("a:1xq", "use integers joined by 'x'"), ("a:1x-2", "dimensions must be >= 0"),
    ("a:1/2", "give one DIMS or three"), ("a:1/2/3/4", "give one DIMS or three"),
    ("a:1x2/1/1x2", "different ranks"), ("a:2/1/3", "dim 0 is min 2 / opt 1 / max 3"),
    ("a:1/3/2", "need min <= opt <= max"), (f"a:{2**31}", "every dimension must be in 0..2147483647"),
])
def test_parse_refusals(spec, msg):
    with pytest.raises(ShapeSpecError, match=msg):
        ShapeMap.parse(spec)


def test_make_range_boundaries():
    assert D._make_range("a", (2**31 - 1,), (2**31 - 1,), (2**31 - 1,)).max == (2**31 - 1,)
    assert D._make_range("a", (1, 1), (1, 2), (1, 2)).opt == (1, 2)  # equal bounds are fine
    assert D._make_range("a", (0,), (0,), (0,)).fixed
    with pytest.raises(ShapeSpecError, match="dim 1 is min 1 / opt 3 / max 2"):
        D._make_range("a", (1, 1), (1, 3), (1, 2))
    with pytest.raises(ShapeSpecError, match="every dimension"):
        D._make_range("a", (-1,), (1,), (1,))
    assert D._split_items(" a , ,b ") == ["a", "b"]
    assert D._parse_dims("a", " 2X3 ") == (2, 3) and D._parse_dims("a", "scalar") == ()


def _model(dims_by_input, elem=TensorProto.FLOAT):
    ins = [helper.make_tensor_value_info(n, elem, d) for n, d in dims_by_input.items()]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"], name=f"id_{n}") for n in dims_by_input]
    outs = [helper.make_tensor_value_info(f"{n}_out", elem, None) for n in dims_by_input]
    g = helper.make_graph(nodes, "g", ins, outs)
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="m")


def test_input_specs_dims_kinds():
    m = _model({"x": ["N", 3, None, 0]})
    (s,) = D.input_specs(m)
    assert s.shape == ("N", 3, None, None)  # dim_value 0 is "unknown" in ONNX value info
    assert s.dynamic and s.dtype_name == "float" and s.np_dtype == np.float32
    assert s.to_json() == {"name": "x", "dtype": "float", "shape": ["N", 3, None, None]}
    fixed = D.input_specs(_model({"y": [2, 3]}))[0]
    assert not fixed.dynamic and fixed.shape == (2, 3)
    no_shape = D.TensorSpec("z", TensorProto.INT64, None)
    assert no_shape.dynamic and no_shape.to_json()["shape"] is None and no_shape.np_dtype == np.int64
    vi = helper.make_tensor_value_info("u", TensorProto.FLOAT, None)
    assert D._spec_of(vi).shape is None
    assert [s.name for s in D.output_specs(m)] == ["x_out"]
    assert D.np_dtype(TensorProto.FLOAT16) == np.float16


def test_resolve_shapes_by_hand():
    m = _model({"x": ["N", 3, "H"], "k": [5]})
    with pytest.warns(UserWarning, match=r"dynamic dims without --shapes set to 1: x\[0\]=N, x\[2\]=H"):
        assert D.resolve_shapes(m) == {"x": (1, 3, 1), "k": (5,)}
    with pytest.warns(UserWarning, match=r"set to 7: x\[2\]=H"):
        assert D.resolve_shapes(m, batch=4, default_dim=7) == {"x": (4, 3, 7), "k": (5,)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = D.resolve_shapes(m, "x:1x3x8/2x3x16/4x3x32")
        assert got == {"x": (2, 3, 16), "k": (5,)}
        assert D.resolve_shapes(m, "x:1x3x8/2x3x16/4x3x32", which="max")["x"] == (4, 3, 32)
        assert D.resolve_shapes(m, "x:1x3x8/2x3x16/4x3x32", which="min")["x"] == (1, 3, 8)
        assert D.resolve_shapes(m, {"x": [1, 3, 2], "k": [5]}) == {"x": (1, 3, 2), "k": (5,)}
    with pytest.raises(ShapeSpecError, match=r"--shapes names 'y'.*the model's inputs are \['x', 'k'\]"):
        D.resolve_shapes(m, "y:1")
    with pytest.raises(ShapeSpecError, match="gives 'x' rank 2, the model expects rank 3"):
        D.resolve_shapes(m, "x:1x3")
    with pytest.raises(ShapeSpecError, match="gives 'x' dim 1 = 4, but the model fixes it to 3"):
        D.resolve_shapes(m, "x:1x4x2")
    with pytest.raises(ShapeSpecError, match="'k' dim 0 = 6"):
        D.resolve_shapes(m, "x:1x3x2,k:6")
    unknown = wb.load(helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["u"], ["v"], name="i")], "g",
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(ShapeSpecError, match="input 'u' has no shape in the model; give it with --shapes u:DIMS"):
        D.resolve_shapes(unknown)
    assert D.resolve_shapes(unknown, "u:2x2") == {"u": (2, 2)}


def test_batch_helpers_by_hand():
    feeds = {"s": np.float32(1.0), "x": np.zeros((5, 2)), "y": np.zeros((3,))}
    assert D.feeds_batch(feeds) == 5          # first input with rank >= 1, axis 0
    assert D.feeds_batch({"s": np.float32(1.0)}) == 1
    assert D.samples_in(feeds) == 5 and D.samples_in({"s": np.float32(1.0)}) == 1
    assert D.samples_in({"x": np.zeros((2, 7))}, {"x": 1}) == 7
    assert D.samples_in({"x": np.zeros((2, 7)), "y": np.zeros(4)}, {"x": None}) == 4  # no batch axis: skipped
    assert D.samples_in({"x": np.zeros((2,))}, {"x": 1, "y": 0}) == 1  # axis beyond its rank: skipped
    assert D.samples_in({"x": np.zeros((6, 2))}, {}) == 6  # axis 0 when not named
    b = [{"x": np.zeros((n, 1))} for n in (3, 3, 3, 3)]
    assert len(D.head_batches(b, 6)) == 2 and len(D.head_batches(b, 7)) == 3 and len(D.head_batches(b, 0)) == 1
    assert len(D.head_batches(b, 100)) == 4 and D.head_batches([], 5) == []
    a = np.arange(24).reshape(2, 3, 4)
    assert D._take(a, 1, 1, 3).tolist() == a[:, 1:3].tolist() and D._take(a, 0, 1, 2).shape == (1, 3, 4)


def test_static_and_default_batch():
    assert D.static_batch(_model({"x": [4, 3]})) == 4
    assert D.static_batch(_model({"x": ["N", 3]})) is None
    assert D.default_batch(_model({"x": [4, 3]}), 16) is None
    assert D.default_batch(_model({"x": ["N", 3]}), 16) == 16
    assert D.default_batch(_model({"x": ["N", 3]}), None) == D.DEFAULT_BATCH


def test_cast_feeds_by_hand():
    m = _model({"x": [2]}, elem=TensorProto.FLOAT16)
    a = np.array([1.5, 2.5], np.float32)
    out = D.cast_feeds({"x": a, "extra": 1}, m)
    assert list(out) == ["x"] and out["x"].dtype == np.float16 and out["x"].tolist() == [1.5, 2.5]
    same = np.zeros(2, np.float16)
    assert D.cast_feeds({"x": same}, m)["x"] is same
    with pytest.raises(wb.errors.DataError, match="feeds lack input 'x' of m; they have \\['y'\\]"):
        D.cast_feeds({"y": a}, m)


# ------------------------------------------------------------------------------------------ survivors of the first run
@pytest.mark.parametrize("spec,msg", [("inp:1xq", "for 'inp'"), ("inp:2/1/3", "range for 'inp' dim 0"),
                                      ("inp:1x2/1/1x2", "shapes for 'inp' have different ranks"),
                                      (f"inp:{2**31}", "shape for 'inp': every dimension"),
                                      ({"inp": "2/1/3"}, "range for 'inp'"),
                                      ({"inp": [(2,), (1,), (3,)]}, "range for 'inp'"),
                                      ("inp:1/1xq/2", "bad dims '1xq' for 'inp'"),
                                      ({"inp": [2, 2**31]}, "shape for 'inp': every dimension")])
def test_errors_name_the_input(spec, msg):
    with pytest.raises(ShapeSpecError, match=msg):
        ShapeMap.parse(spec)


def test_spec_dims_of_one_and_explicit_empty_param():
    assert D.input_specs(_model({"x": [1, 3]}))[0].shape == (1, 3)
    vi = helper.make_tensor_value_info("u", TensorProto.FLOAT, [2])
    vi.type.tensor_type.shape.dim.add().dim_param = ""
    assert D._spec_of(vi).shape == (2, None)


def test_take_and_feeds_batch_details():
    a = np.arange(36).reshape(3, 3, 4)
    assert D._take(a, 0, 1, 2).shape == (1, 3, 4) and D._take(a, 2, 0, 1).shape == (3, 3, 1)
    assert D.feeds_batch({"x": np.zeros(5)}) == 5  # a 1-D input is batched along axis 0
    m = _model({"x": ["N", 3]})
    assert D.feeds_batch({"x": np.zeros((6, 3))}, m) == 6
    b = [{"x": np.zeros((3, 1))}, {"x": np.zeros((3, 1))}]
    head = D.head_batches(b, 4)
    assert head[0] is b[0] and head[1] is b[1]


def test_feeds_batch_follows_the_models_batch_axis():
    m = _model({"state": [2, "N", 16]})  # a recurrent state: the symbolic dim 1 is the batch
    assert D.model_batch_axes(m) == {"state": 1}
    feeds = {"state": np.zeros((2, 7, 16), np.float32)}
    assert D.feeds_batch(feeds, m) == 7 and D.feeds_batch(feeds) == 2  # without the model: axis 0


def test_resolve_shapes_batch_axis_override():
    m = _model({"x": ["N", 3, "H"]})
    with pytest.warns(UserWarning, match=r"x\[0\]=N"):
        got = D.resolve_shapes(m, batch=4, batch_axis={"x": 2})
    assert got == {"x": (1, 3, 4)}


def test_static_batch_honours_batch_axis():
    assert D.static_batch(_model({"x": [4, 3]}), batch_axis={"x": 1}) == 3


def test_static_batch_of_two_inputs_whose_fixed_batches_disagree():
    """x fixes batch 9 and y batch 2 (both on axis 0 by the caller's batch_axis; the shape doctor alone gives y no
    batch axis): the batch a run can use for both is the smaller one."""
    m = _model({"x": [9, 3], "y": [2, 3]})
    assert D.model_batch_axes(m) == {"x": 0, "y": None} and D.static_batch(m) == 9
    assert D.static_batch(m, batch_axis={"x": 0, "y": 0}) == 2
    assert D.static_batch(_model({"x": [9, 3], "y": [2, 3], "z": [5, 1]}), batch_axis="x:0,y:0,z:0") == 2


# ------------------------------------------------------------------------------------------ synthetic_inputs (session 27)
def _kinds_model():
    """Inputs the shape doctor reads value ranges for: ``ids`` (int64) and ``fid`` (float, cast to int) index a
    7-row and a 3-row table; ``m`` (int64) is a mask (``1 - m``); ``sr`` (int64 scalar) is compared with 16000;
    ``flag`` (bool), ``k`` (int32) and ``h`` (float16) are plain."""
    from onnx import numpy_helper

    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    nodes = [helper.make_node("Gather", ["t7", "ids"], ["e"], name="emb"),
             helper.make_node("Cast", ["fid"], ["fid_i"], name="cast", to=i64),
             helper.make_node("Gather", ["t3", "fid_i"], ["e2"], name="emb2"),
             helper.make_node("Sub", ["one", "m"], ["inv"], name="inv"),
             helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="eq"),
             helper.make_node("Identity", ["flag"], ["flag_o"], name="f"),
             helper.make_node("Identity", ["k"], ["k_o"], name="kk"),
             helper.make_node("Identity", ["h"], ["h_o"], name="hh")]
    ins = [("ids", i64, ["N", 5]), ("fid", f32, ["N", 3]), ("m", i64, ["N", 5]), ("sr", i64, []),
           ("flag", TensorProto.BOOL, ["N", 64]), ("k", TensorProto.INT32, ["N", 64]), ("h", TensorProto.FLOAT16, ["N", 64])]
    outs = ["e", "e2", "inv", "is16k", "flag_o", "k_o", "h_o"]
    g = helper.make_graph(nodes, "kinds", [helper.make_tensor_value_info(*i) for i in ins],
                          [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
                          [numpy_helper.from_array(np.zeros((7, 4), np.float32), "t7"),
                           numpy_helper.from_array(np.zeros((3, 2), np.float32), "t3"),
                           numpy_helper.from_array(np.array(1, np.int64), "one"),
                           numpy_helper.from_array(np.array(16000, np.int64), "rate")])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="kinds")


def test_synthetic_inputs_follow_the_value_kinds_the_graph_implies():
    m = _kinds_model()
    f = D.synthetic_inputs(m, batch=64, seed=3)
    assert {k: (v.dtype, v.shape) for k, v in f.items()} == {
        "ids": (np.int64, (64, 5)), "fid": (np.float32, (64, 3)), "m": (np.int64, (64, 5)), "sr": (np.int64, ()),
        "flag": (np.bool_, (64, 64)), "k": (np.int32, (64, 64)), "h": (np.float16, (64, 64))}
    assert set(np.unique(f["ids"])) == set(range(7))  # every row of the 7-row table, none past it
    assert set(np.unique(f["fid"])) == {0.0, 1.0, 2.0}  # a float index: whole numbers below the 3 rows
    assert (f["m"] == 1).all() and f["sr"] == 16000  # a mask of ones; the compared constant
    assert 0.45 < f["flag"].mean() < 0.55  # a fair coin over 4096 draws
    assert f["k"].min() == 0 and f["k"].max() == 9 and 4.2 < f["k"].mean() < 4.8  # uniform in [0, 10)
    h = f["h"].astype(np.float64)
    assert abs(h.mean()) < 0.1 and 0.9 < h.std() < 1.1  # standard normal
    g = D.synthetic_inputs(m, batch=64, seed=3)
    assert all(np.array_equal(f[k], g[k]) for k in f)  # same seed, same arrays
    assert not np.array_equal(D.synthetic_inputs(m, batch=64, seed=4)["h"], f["h"])


def test_synthetic_inputs_shapes_and_batch_axis():
    m = _model({"x": ["N", 3, "H"]})
    assert D.synthetic_inputs(m, "x:5x3x2")["x"].shape == (5, 3, 2)
    with pytest.warns(UserWarning, match=r"x\[0\]=N"):
        assert D.synthetic_inputs(m, batch=4, batch_axis={"x": 2})["x"].shape == (1, 3, 4)


def test_synthetic_inputs_memory_budget(monkeypatch):
    """The float64 draws of all inputs together (8 bytes per element) must fit WORKBENCH_MAX_DATA_BYTES: exactly
    the budget is allowed, one row more is refused, and the inputs before count too."""
    m = _model({"x": ["N", 10], "y": ["N", 10]})
    monkeypatch.setenv("WORKBENCH_MAX_DATA_BYTES", str(2 * 10 * 10 * 8))  # two inputs of (10, 10): exactly
    assert D.synthetic_inputs(m, batch=10)["y"].shape == (10, 10)
    with pytest.raises(wb.errors.DataError, match=r"synthetic input 'y' of shape \[11, 10\] \(with the inputs before"):
        D.synthetic_inputs(m, batch=11)
    monkeypatch.setenv("WORKBENCH_MAX_DATA_BYTES", str(10 * 10 * 8 + 8))  # one input fits, not both
    with pytest.raises(wb.errors.DataError, match="synthetic input 'y'"):
        D.synthetic_inputs(m, batch=10)


def test_synthetic_inputs_report_the_memory_a_failed_allocation_wanted(monkeypatch):
    """Within the data budget but more than the machine can allocate (2**40 float64 draws = 8192 GiB: refused at
    once by the kernel's overcommit check, nothing is touched): a DataError with the size, not a MemoryError."""
    from pathlib import Path

    mode = Path("/proc/sys/vm/overcommit_memory")
    if not mode.exists() or mode.read_text().strip() not in ("0", "2"):
        pytest.skip("needs Linux with heuristic or strict overcommit (mode 0/2), which refuses an 8 TiB allocation")
    monkeypatch.setenv("WORKBENCH_MAX_DATA_BYTES", str(2 ** 60))
    m = _model({"x": ["N", 2 ** 20]})
    with pytest.raises(wb.errors.DataError, match=r"of shape \[1048576, 1048576\] needs ~8192\.0 GiB: not enough memory"):
        D.synthetic_inputs(m, batch=2 ** 20)


def test_synthetic_inputs_default_seed_and_a_bool_used_as_an_index():
    """The default seed is 0 (the documented signature). A bool input cast to int64 to index a 7-row table can only
    reach rows 0 and 1: it stays a fair coin (not values 0..6 turned into mostly True)."""
    from onnx import numpy_helper

    nodes = [helper.make_node("Cast", ["b"], ["bi"], name="cast", to=TensorProto.INT64),
             helper.make_node("Gather", ["t7", "bi"], ["e"], name="emb")]
    g = helper.make_graph(nodes, "bidx", [helper.make_tensor_value_info("b", TensorProto.BOOL, ["N", 64])],
                          [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.zeros((7, 2), np.float32), "t7")])
    m = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="bidx")
    b = D.synthetic_inputs(m, batch=64)["b"]
    assert b.dtype == np.bool_ and 0.45 < b.mean() < 0.55
    assert np.array_equal(b, D.synthetic_inputs(m, batch=64, seed=0)["b"])
    assert not np.array_equal(b, D.synthetic_inputs(m, batch=64, seed=1)["b"])
