"""workbench.data: --shapes parsing, shape resolution, synthetic inputs, .npz datasets and batching."""
from __future__ import annotations

import pathlib
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.data import (NpzDataset, ShapeMap, ShapeRange, as_feed_batches, input_specs, output_specs,
                            resolve_shapes, synthetic_inputs)
from workbench.errors import DataError, ShapeSpecError


def _multi_input_model(tmp_path: Path) -> wb.Model:
    """Inputs of several dtypes with a dynamic batch: x float32 [N,3,8], h float16 [N,4],
    ids int64 [N,5], mask bool [N,5], scale float32 [2] (fixed)."""
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8]),
           helper.make_tensor_value_info("h", TensorProto.FLOAT16, ["N", 4]),
           helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5]),
           helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 5]),
           helper.make_tensor_value_info("scale", TensorProto.FLOAT, [2])]
    nodes = [helper.make_node("Identity", [i.name], [f"{i.name}_out"]) for i in ins]
    outs = [helper.make_tensor_value_info(f"{i.name}_out", i.type.tensor_type.elem_type, None) for i in ins]
    m = helper.make_model(helper.make_graph(nodes, "multi", ins, outs), opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    p = tmp_path / "multi.onnx"
    onnx.save(m, str(p))
    return wb.load(p)


def _static_model(tmp_path: Path, batch: int = 4) -> wb.Model:
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "static",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])])
    p = tmp_path / "static.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(p))
    return wb.load(p)


# ------------------------------------------------------------------------------------------- ShapeMap
def test_one_shape():
    sm = ShapeMap.parse("input:1x3x224x224")
    assert list(sm) == ["input"]
    r = sm["input"]
    assert r.min == r.opt == r.max == (1, 3, 224, 224) and r.fixed
    assert sm.to_spec() == "input:1x3x224x224"


def test_three_shapes_and_several_inputs():
    sm = ShapeMap.parse("a:1x3/4x3/8x3, b:1x2x2 ,ns:0:1x7")
    assert sm["a"] == ShapeRange((1, 3), (4, 3), (8, 3)) and not sm["a"].fixed
    assert sm["b"].fixed and sm["b"].opt == (1, 2, 2)
    assert sm["ns:0"].opt == (1, 7)  # names may contain ':'; the last one separates the dims
    assert ShapeMap.parse(sm.to_spec()) == sm
    assert sm.to_json()["a"] == {"min": [1, 3], "opt": [4, 3], "max": [8, 3]}


def test_mapping_forms():
    sm = ShapeMap.parse({"a": [1, 3], "b": [[1, 2], [2, 2], [4, 2]], "c": "2x2"})
    assert sm["a"].opt == (1, 3) and sm["b"].max == (4, 2) and sm["c"].opt == (2, 2)
    assert ShapeMap.parse(None) == {} and ShapeMap.parse("") == {}
    with pytest.raises(ShapeSpecError):
        ShapeMap.parse({"a": [[1, 2], [2, 2]]})


@pytest.mark.parametrize("spec", ["input", "1x3x224x224", ":1x3", "x:1xax3", "x:1x3/2x3", "x:1x3/2x3/3x3/4x3",
                                  "x:-1x3", "x:1.5x3", "x:1x3,x:2x3"])
def test_bad_syntax(spec):
    with pytest.raises(ShapeSpecError):
        ShapeMap.parse(spec)


def test_range_rank_mismatch_and_min_gt_max():
    with pytest.raises(ShapeSpecError, match="rank"):
        ShapeMap.parse("x:1x3/1x3x3/1x3")
    with pytest.raises(ShapeSpecError, match="min <= opt <= max"):
        ShapeMap.parse("x:8x3/4x3/16x3")
    with pytest.raises(ShapeSpecError, match="min <= opt <= max"):
        ShapeMap.parse("x:1x3/4x3/2x3")


def test_resolve_against_model(tmp_path):
    m = _multi_input_model(tmp_path)
    with pytest.raises(ShapeSpecError, match="not model inputs"):
        resolve_shapes(m, "nope:1x3x8")
    with pytest.raises(ShapeSpecError, match="rank"):
        resolve_shapes(m, "x:2x3")
    with pytest.raises(ShapeSpecError, match="fixes it to 3"):
        resolve_shapes(m, "x:2x4x8")  # dim 1 is fixed to 3
    with pytest.raises(ShapeSpecError, match="fixes it to 2"):
        resolve_shapes(m, "scale:3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = resolve_shapes(m, "x:1x3x8/6x3x8/9x3x8", batch=2)  # batch fills the rest; no warning
    assert got["x"] == (6, 3, 8) and got["h"] == (2, 4) and got["scale"] == (2,)
    assert resolve_shapes(m, "x:1x3x8/6x3x8/9x3x8", which="max", batch=2)["x"] == (9, 3, 8)
    with pytest.warns(UserWarning, match="dynamic dims"):
        assert resolve_shapes(m)["ids"] == (1, 5)


def test_io_specs(tmp_path):
    m = _multi_input_model(tmp_path)
    specs = input_specs(m)
    assert [s.name for s in specs] == ["x", "h", "ids", "mask", "scale"]
    assert specs[0].shape == ("N", 3, 8) and specs[0].dynamic and not specs[4].dynamic
    assert [s.dtype_name for s in specs] == ["float", "float16", "int64", "bool", "float"]
    assert specs[1].to_json() == {"name": "h", "dtype": "float16", "shape": ["N", 4]}
    assert output_specs(m)[0].shape is None


# ------------------------------------------------------------------------------------------- synthetic
def test_synthetic_inputs_deterministic_and_typed(tmp_path):
    m = _multi_input_model(tmp_path)
    a = synthetic_inputs(m, "x:3x3x8", seed=7, batch=3)
    b = synthetic_inputs(m, "x:3x3x8", seed=7, batch=3)
    c = synthetic_inputs(m, "x:3x3x8", seed=8, batch=3)
    assert a.keys() == b.keys() == {"x", "h", "ids", "mask", "scale"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == input_specs(m)[list(a).index(k)].np_dtype
    assert not np.array_equal(a["x"], c["x"])
    assert a["x"].shape == (3, 3, 8) and a["h"].shape == (3, 4) and a["scale"].shape == (2,)
    assert a["ids"].min() >= 0 and a["ids"].max() < 10
    assert a["mask"].dtype == np.bool_ and a["h"].dtype == np.float16
    # ONNX Runtime accepts them as they are
    r = wb.get_backend("onnxruntime").build(wb.Variant.of(m)).run(a)
    for k in a:
        np.testing.assert_array_equal(r[f"{k}_out"], a[k])


# ------------------------------------------------------------------------------------------- NpzDataset
def _good_arrays(n=10):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 3, 8)).astype(np.float32), "h": np.ones((n, 4), np.float16),
            "ids": np.arange(n * 5, dtype=np.int64).reshape(n, 5), "mask": np.ones((n, 5), bool),
            "scale": np.ones((2,), np.float32)}


def _dyn_model(tmp_path):
    """Like _multi_input_model without the fixed `scale` input (every array has a batch axis)."""
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8]),
           helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])]
    nodes = [helper.make_node("Identity", ["x"], ["xo"]), helper.make_node("Identity", ["ids"], ["io"])]
    outs = [helper.make_tensor_value_info("xo", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("io", TensorProto.INT64, None)]
    p = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "dyn", ins, outs),
                                opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(p))
    return wb.load(p)


def _npz(tmp_path, **arrays) -> Path:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def test_npz_good_and_batches(tmp_path):
    m = _dyn_model(tmp_path)
    a = _good_arrays(10)
    ds = NpzDataset(_npz(tmp_path, x=a["x"].astype(np.float64), ids=a["ids"].astype(np.int32)), m)
    assert len(ds) == 10
    assert ds.inputs["x"].dtype == np.float32 and ds.inputs["ids"].dtype == np.int64  # safe casts
    sizes = [b["x"].shape[0] for b in ds.batches(3)]
    assert sizes == [3, 3, 3, 1]
    assert [b["x"].shape[0] for b in ds.batches(3, drop_last=True)] == [3, 3, 3]
    assert [b["x"].shape[0] for b in ds.batches(4, limit=6)] == [4, 2]
    got = np.concatenate([b["x"] for b in ds.batches(3)])
    np.testing.assert_allclose(got, a["x"].astype(np.float32))
    first = next(as_feed_batches(m, ds, batch_size=2))
    np.testing.assert_array_equal(first["ids"], a["ids"][:2])


def test_npz_static_batch(tmp_path):
    m = _static_model(tmp_path, batch=4)
    ds = NpzDataset(_npz(tmp_path, x=np.ones((10, 3), np.float32)), m)
    assert [b["x"].shape[0] for b in ds.batches()] == [4, 4]  # the partial batch is dropped
    assert ds.batch_size_for(None) == 4 and ds.batch_size_for(4) == 4
    with pytest.raises(DataError, match="fixes the batch size to 4"):
        list(ds.batches(3))


def test_npz_wrong_names(tmp_path):
    m = _dyn_model(tmp_path)
    a = _good_arrays()
    with pytest.raises(DataError, match="no array for model input"):
        NpzDataset(_npz(tmp_path, x=a["x"], idz=a["ids"]), m)
    with pytest.raises(DataError, match="not model inputs"):
        NpzDataset(_npz(tmp_path, x=a["x"], ids=a["ids"], label=np.zeros(10)), m)
    ds = NpzDataset(_npz(tmp_path, x=a["x"], ids=a["ids"], label=np.arange(10)), m, label_keys=["label"])
    assert [len(b) for b in ds.label_batches("label", 4)] == [4, 4, 2]
    with pytest.raises(DataError, match="label key"):
        NpzDataset(_npz(tmp_path, x=a["x"], ids=a["ids"]), m, label_keys=["label"])


@pytest.mark.parametrize("x, ids, match", [
    (np.zeros((10, 3), np.float32), None, "rank"),
    (np.zeros((10, 4, 8), np.float32), None, "dim 1 must be 3"),
    (np.zeros((10, 3, 8), np.int64), None, "dtype int64"),  # int data for a float input
    (None, np.zeros((10, 5), np.float32), "dtype float32"),  # float data for an int input
    (None, np.full((10, 5), "a"), "dtype <U1"),  # strings
    (None, np.zeros((10, 5), np.uint64), "dtype uint64"),  # unsafe integer cast
])
def test_npz_wrong_shapes_and_dtypes(tmp_path, x, ids, match):
    m = _dyn_model(tmp_path)
    a = _good_arrays()
    arrays = {"x": a["x"] if x is None else x, "ids": a["ids"] if ids is None else ids}
    with pytest.raises(DataError, match=match):
        NpzDataset(_npz(tmp_path, **arrays), m)


def test_npz_different_sample_counts(tmp_path):
    m = _dyn_model(tmp_path)
    a = _good_arrays(10)
    with pytest.raises(DataError, match="different sample counts"):
        NpzDataset(_npz(tmp_path, x=a["x"], ids=a["ids"][:7]), m)


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_npz_object_arrays_refused_without_unpickling(tmp_path):
    m = _dyn_model(tmp_path)
    marker = tmp_path / "unpickled"
    obj = np.empty(10, dtype=object)
    obj[:] = [_Payload(marker)] * 10
    p = tmp_path / "evil.npz"
    np.savez(p, x=obj, ids=_good_arrays()["ids"])
    with pytest.raises(DataError, match="refusing to unpickle"):
        NpzDataset(p, m)
    assert not marker.exists()


def test_npz_not_a_file_or_not_npz(tmp_path):
    m = _dyn_model(tmp_path)
    with pytest.raises(DataError, match="not found"):
        NpzDataset(tmp_path / "none.npz", m)
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(DataError, match="not a readable"):
        NpzDataset(bad, m)
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros((2, 3, 8), np.float32))
    with pytest.raises(DataError, match=r"\.npy array"):
        NpzDataset(npy, m)


def test_npz_empty_and_nonfinite(tmp_path):
    m = _dyn_model(tmp_path)
    with pytest.raises(DataError, match="no samples"):
        NpzDataset(_npz(tmp_path, x=np.zeros((0, 3, 8), np.float32), ids=np.zeros((0, 5), np.int64)), m)
    a = _good_arrays()
    a["x"][3, 0, 0] = np.nan
    ds = NpzDataset(_npz(tmp_path, x=a["x"], ids=a["ids"]), m)
    with pytest.raises(DataError, match="NaN"):
        ds.check_finite()


def test_feed_batches_from_iterable(tmp_path):
    m = _dyn_model(tmp_path)
    a = _good_arrays(4)
    feeds = [{"x": a["x"][:2], "ids": a["ids"][:2]}, {"x": a["x"][2:], "ids": a["ids"][2:]}]
    assert len(list(as_feed_batches(m, feeds))) == 2
    # limit counts samples (2 + 2 here), not items: the batch that crosses it is cut on the batch axis
    assert [f["x"].shape[0] for f in as_feed_batches(m, feeds, limit=1)] == [1]
    assert [f["ids"].shape[0] for f in as_feed_batches(m, feeds, limit=3)] == [2, 1]
    assert [f["x"].shape[0] for f in as_feed_batches(m, feeds, limit=4)] == [2, 2]
    with pytest.raises(DataError, match="lacks input"):
        list(as_feed_batches(m, [{"x": a["x"]}]))
    synth = list(as_feed_batches(m, None, batch_size=3, seed=1, shapes=None))
    assert len(synth) == 1 and synth[0]["x"].shape == (3, 3, 8)
