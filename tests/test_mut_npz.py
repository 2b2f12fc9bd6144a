"""Fast behavioural tests for the .npz reader of workbench/data.py (mutation target `data-npz`,
tools/mutate.py): NpzDataset's checks, batching along each input's batch axis, the Batches sequence, the
NaN/Inf pass, labels, and the data normalizers (as_feed_batches, resolve_data).

Models are built here with onnx.helper (a dynamic-batch input, a fixed-batch input, a scalar and a recurrent
state), arrays with numpy; every expected batch is sliced here from the same arrays.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import workbench as wb
from workbench.data import (Batches, NpzDataset, as_feed_batches, first_batch_rows, resolve_data)
from workbench.errors import DataError

X = np.arange(30, dtype=np.float32).reshape(10, 3)


def _model(batch="n", extra=(), name="m", x_type=T.FLOAT):
    inputs = [h.make_tensor_value_info("x", x_type, [batch, 3])]
    nodes = [h.make_node("Identity", ["x"], ["y"], name="id")]
    outs = [h.make_tensor_value_info("y", x_type, [batch, 3])]
    for nm, typ, shape in extra:
        inputs.append(h.make_tensor_value_info(nm, typ, shape))
        nodes.append(h.make_node("Identity", [nm], [nm + "_o"], name=nm + "_id"))
        outs.append(h.make_tensor_value_info(nm + "_o", typ, shape))
    return wb.load(h.make_model(h.make_graph(nodes, "g", inputs, outs)), name=name)


@pytest.fixture(params=["arrays", "stored", "compressed"])
def source(request, tmp_path):
    """The same arrays as a mapping, an uncompressed and a compressed .npz."""
    def make(**arrays):
        if request.param == "arrays":
            return arrays
        p = tmp_path / f"d_{request.param}.npz"
        (np.savez if request.param == "stored" else np.savez_compressed)(p, **arrays)
        return str(p)
    make.kind = request.param
    return make


def test_batches_along_axis_zero(source):
    with NpzDataset(source(x=X), _model()) as ds:
        assert len(ds) == 10 and ds.num_samples == 10 and ds.source_keys == ["x"]
        assert (ds.reader is None) == (source.kind == "arrays")
        b = ds.batch_list(4)
        assert isinstance(b, Batches) and len(b) == 3 and b.size == 4 and b.num_samples == 10
        assert list(b.bounds) == [(0, 4), (4, 8), (8, 10)]
        got = [f["x"] for f in b]
        assert [g.shape[0] for g in got] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(got), X)
        assert [f["x"].shape[0] for f in b] == [4, 4, 2]  # re-iterable
        np.testing.assert_array_equal(b[1]["x"], X[4:8])
        np.testing.assert_array_equal(b[-1]["x"], X[8:])
        tail = b[1:]
        assert isinstance(tail, Batches) and len(tail) == 2 and tail.num_samples == 6
        np.testing.assert_array_equal(tail[0]["x"], X[4:8])
        every_other = b[::2]
        assert list(every_other.bounds) == [(0, 4), (8, 10)] and every_other.num_samples == 6
        assert b[3:].num_samples == 0 and len(b[3:]) == 0
        assert [f["x"].shape[0] for f in ds.batches(3, limit=7)] == [3, 3, 1]
        assert [f["x"].shape[0] for f in ds.batches(4, drop_last=True)] == [4, 4]
        assert ds.batch_list(4, limit=20).num_samples == 10
        assert [f["x"].shape[0] for f in ds.batches()] == [1] * 10  # no batch size, dynamic batch: 1
        whole = ds.inputs
        assert list(whole) == ["x"] and len(whole) == 1
        np.testing.assert_array_equal(whole["x"], X)
        with pytest.raises(KeyError):
            whole["nope"]
        src = "arrays" if source.kind == "arrays" else str(ds.path)
        assert repr(b) == f"Batches(3 batches, 10 samples of {src})"


def test_head_of_batches():
    b = NpzDataset({"x": X}, _model()).batch_list(4)
    h5 = b.head(5)
    assert list(h5.bounds) == [(0, 4), (4, 5)] and h5.num_samples == 5
    assert list(b.head(5, whole=True).bounds) == [(0, 4)]
    assert list(b.head(8, whole=True).bounds) == [(0, 4), (4, 8)]
    assert list(b.head(100).bounds) == [(0, 4), (4, 8), (8, 10)]
    assert list(b.head(100, whole=True).bounds) == [(0, 4), (4, 8)]
    assert list(b.head(4).bounds) == [(0, 4)]
    later = b[1:].head(3)
    assert list(later.bounds) == [(4, 7)] and later.num_samples == 3
    np.testing.assert_array_equal(later[0]["x"], X[4:7])
    empty = b[3:]
    assert empty.head(5) is empty
    ds2 = NpzDataset({"x": X * 2}, _model())
    moved = b.with_dataset(ds2)
    assert moved.dataset is ds2 and list(moved.bounds) == list(b.bounds)
    np.testing.assert_array_equal(moved[0]["x"], X[:4] * 2)
    assert list(b[1:].with_dataset(ds2).bounds) == [(4, 8), (8, 10)]  # a slice keeps its own starts
    assert list(b[1:].head(8, whole=True).bounds) == [(4, 8)]  # 6 samples left after 4: one whole batch
    ones = NpzDataset({"x": X}, _model()).batch_list(1)
    assert len(ones[:3].head(100)) == 3 and ones[:3].head(100).num_samples == 3


def test_float64_is_cast_and_kinds_are_checked(source):
    ds = NpzDataset(source(x=X.astype(np.float64)), _model())
    assert next(iter(ds.batches(10)))["x"].dtype == np.float32 and ds.inputs["x"].dtype == np.float32
    for bad in (X.astype(np.int32), X.astype("U3")):
        with pytest.raises(DataError):
            NpzDataset(source(x=bad), _model())
    m64 = _model(x_type=T.INT64)
    ok = NpzDataset(source(x=X.astype(np.int32)), m64)  # int32 -> int64 is a safe cast
    assert ok.inputs["x"].dtype == np.int64
    for bad in (X, X.astype(np.uint8)):
        with pytest.raises(DataError):
            NpzDataset(source(x=bad), m64)
    with pytest.raises(DataError):
        NpzDataset(source(x=X.astype(np.int64)), _model(x_type=T.INT32))  # not a safe cast


def test_keys_shapes_and_counts_are_checked(source):
    m = _model(extra=[("h", T.FLOAT, [2, "n", 5])])
    h_arr = np.zeros((2, 10, 5), np.float32)
    with pytest.raises(DataError, match="no array for model input"):
        NpzDataset(source(x=X), m)
    with pytest.raises(DataError, match="not model inputs"):
        NpzDataset(source(x=X, h=h_arr, junk=X), m)
    assert NpzDataset(source(x=X, h=h_arr, junk=X), m, allow_extra=True).num_samples == 10
    with pytest.raises(DataError, match="rank"):
        NpzDataset(source(x=X[:, :, None]), _model())
    with pytest.raises(DataError, match="dim 1 must be 3"):
        NpzDataset(source(x=np.zeros((10, 4), np.float32)), _model())
    with pytest.raises(DataError, match="different sample counts"):
        NpzDataset(source(x=X, h=np.zeros((2, 9, 5), np.float32)), m)
    with pytest.raises(DataError, match="holds no samples"):
        NpzDataset(source(x=X[:0]), _model())
    with pytest.raises(DataError, match="no batch axis 2"):
        NpzDataset(source(x=X, h=np.zeros((2, 10), np.float32)), _model(extra=[("h", T.FLOAT, None)]),
                   batch_axis="h:2")


def test_state_on_axis_one_and_a_scalar_without_batch_axis(source):
    m = _model(extra=[("h", T.FLOAT, [2, "n", 5]), ("sr", T.INT64, [])])
    h_arr = np.arange(100, dtype=np.float32).reshape(2, 10, 5)
    ds = NpzDataset(source(x=X, h=h_arr, sr=np.array(16000, np.int64)), m, batch_axis="h:1,sr:none")
    assert ds.axes == {"x": 0, "h": 1, "sr": None}
    b = ds.batch_list(4)
    f = b[2]
    np.testing.assert_array_equal(f["x"], X[8:])
    np.testing.assert_array_equal(f["h"], h_arr[:, 8:])
    assert f["sr"].shape == () and int(f["sr"]) == 16000
    assert [int(g["sr"]) for g in b] == [16000] * 3
    np.testing.assert_array_equal(ds.inputs["h"], h_arr)
    # the same file checked against another model (a variant): same axes, same open source
    m2 = _model(extra=[("h", T.FLOAT, [2, "n", 5]), ("sr", T.INT64, [])], name="m2")
    ds2 = ds.for_model(m2)
    assert ds2.axes == ds.axes and ds2.num_samples == 10 and ds2._src is ds._src
    ds3 = ds.for_model(m2, batch_axis="h:1,sr:none")
    assert ds3.axes["h"] == 1
    with pytest.raises(DataError):
        NpzDataset(source(x=X, h=h_arr, sr=np.array([1, 2], np.int64)), m, batch_axis="h:1,sr:none")


def test_fixed_batch_model():
    m = _model(batch=4)
    ds = NpzDataset({"x": X}, m)
    assert ds.batch_size_for(None) == 4 and ds.batch_size_for(4) == 4
    with pytest.raises(DataError, match="fixes the batch size to 4"):
        ds.batch_size_for(3)
    b = ds.batch_list()
    assert list(b.bounds) == [(0, 4), (4, 8)]  # no partial last batch for a fixed batch
    assert first_batch_rows(m) == 4 and first_batch_rows(m, 7) == 7 and first_batch_rows(_model()) == 1
    assert first_batch_rows(_model(extra=[("h", T.FLOAT, [2, 3, 5])]), batch_axis="h:1") == 3
    m2 = _model(batch=4, extra=[("h", T.FLOAT, [2, 2, 5])])
    assert first_batch_rows(m2, batch_axis="h:1") == 2  # the smaller fixed batch


def test_labels():
    lab = np.arange(10) % 3
    ds = NpzDataset({"x": X, "lab": lab, "bad": np.arange(9)}, _model(), label_keys=["lab"], allow_extra=True)
    np.testing.assert_array_equal(ds.labels["lab"], lab)
    assert [list(v) for v in ds.label_batches("lab", 4)] == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0]]
    assert [len(v) for v in ds.label_batches("lab", 4, limit=6)] == [4, 2]
    assert ds.add_labels("lab") is ds.labels["lab"]
    with pytest.raises(DataError, match="9 entries for 10 samples"):
        ds.add_labels("bad")
    assert "bad" not in ds.labels
    with pytest.raises(DataError, match="not found"):
        ds.add_labels("nope")
    with pytest.raises(DataError, match="label key"):
        NpzDataset({"x": X}, _model(), label_keys=["lab"])
    with pytest.raises(DataError, match="different sample counts"):
        NpzDataset({"x": X, "lab": np.arange(9)}, _model(), label_keys=["lab"])
    one = NpzDataset({"x": X[:1], "lab": np.array(2)}, _model(), label_keys=["lab"])
    assert one.num_samples == 1


def test_nan_check_names_the_samples(source):
    bad = X.copy()
    bad[6, 1] = np.nan
    bad[7, 0] = np.inf
    ds = NpzDataset(source(x=bad), _model())
    with pytest.raises(DataError) as e:
        ds.check_finite(rows=4)
    assert "input 'x' has 2 NaN/Inf value(s) in samples 4..7" in str(e.value)
    ds.check_finite(rows=4, limit=4)  # the first 4 samples are clean
    ds.check_finite(limit=6)
    with pytest.raises(DataError) as e:
        ds.check_finite()  # one pass over all 10 samples: no sample range
    assert "2 NaN/Inf value(s)" in str(e.value) and "in samples" not in str(e.value)
    with pytest.raises(DataError) as e:
        ds.check_finite(rows=3, limit=7)
    assert "1 NaN/Inf value(s) in samples 6..6" in str(e.value)
    assert (str(e.value).startswith(f"{ds.path}: input 'x'") if ds.path else str(e.value).startswith("input 'x'"))
    NpzDataset(source(x=X.astype(np.int64)), _model(x_type=T.INT64)).check_finite()  # ints: nothing to check
    held = NpzDataset(source(x=X, sr=np.array([np.nan, 1.0, np.inf], np.float32)),
                      _model(extra=[("sr", T.FLOAT, [3])]), batch_axis="sr:none")
    with pytest.raises(DataError) as e:
        held.check_finite(rows=2)
    assert "input 'sr' has 2 NaN/Inf value(s)" in str(e.value) and "in samples" not in str(e.value)


def test_as_feed_batches_sources(tmp_path):
    m = _model()
    syn = list(as_feed_batches(m, None, batch_size=5, seed=3))
    assert len(syn) == 1 and syn[0]["x"].shape == (5, 3) and syn[0]["x"].dtype == np.float32
    np.savez(tmp_path / "d.npz", x=X, extra=X)
    from_path = list(as_feed_batches(m, tmp_path / "d.npz", batch_size=4, limit=6))
    assert [f["x"].shape[0] for f in from_path] == [4, 2]
    ds = NpzDataset({"x": X}, m)
    assert [f["x"].shape[0] for f in as_feed_batches(m, ds, batch_size=6)] == [6, 4]
    items = [{"x": X[:2].astype(np.float64)}, {"x": X[2:5]}, {"x": X[5:]}]
    got = list(as_feed_batches(m, items, limit=4))  # 4 samples: 2, then 2 of the next item's 3
    assert len(got) == 2 and got[0]["x"].dtype == np.float32 and got[1]["x"].shape == (2, 3)
    np.testing.assert_array_equal(got[1]["x"], X[2:4])
    assert [f["x"].shape[0] for f in as_feed_batches(m, items, limit=5)] == [2, 3]
    assert [f["x"].shape[0] for f in as_feed_batches(m, items, limit=2)] == [2]
    assert [f["x"].shape[0] for f in as_feed_batches(m, items, limit=100)] == [2, 3, 5]
    fixed = _model(batch=2)  # a fixed batch cannot be cut: the batch crossing the limit is left out
    pairs = [{"x": X[:2]}, {"x": X[2:4]}, {"x": X[4:6]}]
    assert [f["x"].shape[0] for f in as_feed_batches(fixed, pairs, limit=5)] == [2, 2]
    with pytest.raises(DataError, match="lacks input"):
        list(as_feed_batches(m, [{"x": X}, {"y": X}]))
    with pytest.raises(DataError, match="data item 1 is a list, expected a dict"):  # was a numpy ValueError
        list(as_feed_batches(m, [{"x": X}, [X]]))
    with pytest.raises(DataError, match="dim 1 must be 3"):
        list(as_feed_batches(m, [{"x": X}, {"x": np.zeros((2, 4), np.float32)}]))
    ms = _model(extra=[("h", T.FLOAT, [2, "n", 5])])
    ok = list(as_feed_batches(ms, [{"x": X[:2], "h": np.zeros((2, 2, 5), np.float32)},
                                   {"x": X[:3], "h": np.zeros((2, 3, 5), np.float32)}], batch_axis="h:1"))
    assert ok[1]["h"].shape == (2, 3, 5)
    with pytest.raises(DataError):  # axis 1 is the batch axis: axis 0 must stay 2
        list(as_feed_batches(ms, [{"x": X[:2], "h": np.zeros((3, 2, 5), np.float32)}], batch_axis="h:1"))


def test_resolve_data(tmp_path):
    m = _model()
    lab = np.arange(10) % 3
    p = tmp_path / "d.npz"
    np.savez(p, x=X, lab=lab, hot=np.eye(3, dtype=np.int64)[lab], flt=lab.astype(np.float32))
    batches, labels = resolve_data(m, str(p), "lab", batch_size=4)
    assert isinstance(batches, Batches) and [f["x"].shape[0] for f in batches] == [4, 4, 2]
    np.testing.assert_array_equal(labels, lab)
    b2, l2 = resolve_data(m, str(p), "lab", batch_size=4, limit=5)
    assert b2.num_samples == 5 and list(l2) == list(lab[:5])
    b3, l3 = resolve_data(m, str(p), None)
    assert b3.size == 32 and b3.num_samples == 10 and l3 is None  # the default batch for a dynamic model
    ds = NpzDataset(str(p), m, allow_extra=True)
    _, l4 = resolve_data(m, ds, "lab")
    np.testing.assert_array_equal(l4, lab)
    with pytest.raises(DataError, match="not found"):
        resolve_data(m, ds, "nope")
    with pytest.raises(DataError, match="integer class ids"):
        resolve_data(m, str(p), "flt")
    with pytest.raises(DataError, match="one class id per sample"):
        resolve_data(m, ds, np.eye(3, dtype=np.int64)[lab])
    one, _ = resolve_data(m, [{"x": X[:2]}, {"x": X[2:5]}], None, limit=1)  # limit counts samples of a list too
    assert len(one) == 1 and one[0]["x"].shape == (1, 3)
    three, lab3 = resolve_data(m, [{"x": X[:2]}, {"x": X[2:5]}], lab[:5], limit=3)
    assert [b["x"].shape[0] for b in three] == [2, 1] and list(lab3) == list(lab[:3])
    col, lcol = resolve_data(m, [{"x": X}], lab[:, None])
    assert isinstance(col, list) and lcol.shape == (10,)
    with pytest.raises(DataError, match="labels hold 9 entries for 10 samples"):
        resolve_data(m, [{"x": X}], lab[:9])
    with pytest.raises(DataError, match="labels hold 0 entries"):
        resolve_data(m, [{"x": X}], np.array(1))
    longer = resolve_data(m, [{"x": X[:4]}], np.arange(6))[1]
    assert list(longer) == [0, 1, 2, 3]  # more labels than samples: the first ones
    with pytest.raises(DataError, match="names a key"):
        resolve_data(m, [{"x": X}], "lab")
    with pytest.raises(DataError, match="no batches"):
        resolve_data(_model(batch=4), NpzDataset({"x": X[:3]}, _model(batch=4)), None)  # 3 samples, batch 4
    syn, lsyn = resolve_data(m, None, None, shapes="x:2x3")
    assert len(syn) == 1 and lsyn is None and syn[0]["x"].shape == (2, 3)
    assert resolve_data(m, None, None)[0][0]["x"].shape == (32, 3)  # one synthetic batch of the default size
    assert resolve_data(m, None, None, batch_size=5)[0][0]["x"].shape == (5, 3)
    bad = X.copy()
    bad[9, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        resolve_data(m, NpzDataset({"x": bad}, m), None, batch_size=4)
    ok, _ = resolve_data(m, NpzDataset({"x": bad}, m), None, batch_size=4, limit=8)  # the NaN is past the limit
    assert ok.num_samples == 8


def test_for_model_keeps_the_override_the_path_and_extra_keys(tmp_path):
    m = _model(extra=[("h", T.FLOAT, [2, "n", 5])])
    p = tmp_path / "d.npz"
    np.savez(p, x=X, h=np.zeros((2, 10, 5), np.float32), lab=np.arange(10))
    ds = NpzDataset(p, m, batch_axis="h:none", label_keys=["lab"])  # h held whole: not the shape doctor's axis 1
    assert ds.axes["h"] is None
    ds2 = ds.for_model(_model(extra=[("h", T.FLOAT, [2, "n", 5])], name="m2"))
    assert ds2.axes == {"x": 0, "h": None} and ds2.path == ds.path and ds2.num_samples == 10
    assert ds.for_model(m, batch_axis="h:1").axes["h"] == 1



def test_with_dataset_holding_other_samples_rebatches_the_whole_and_refuses_a_part():
    """The same arrays read on batch axis 1 hold 7 samples instead of 2: whole batches (also drop_last ones)
    become the whole new dataset in the same batch size; a part (a slice, a head) is refused."""
    g = h.make_graph([h.make_node("Identity", ["x"], ["y"], name="id")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, ["a", "b", 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["a", "b", 3])])
    model = wb.load(h.make_model(g), name="two_dyn")
    x = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    on0, on1 = NpzDataset({"x": x}, model), NpzDataset({"x": x}, model, batch_axis="x:1")
    assert (on0.num_samples, on1.num_samples) == (2, 7)
    whole = on0.batch_list(3).with_dataset(on1)
    assert list(whole.bounds) == [(0, 3), (3, 6), (6, 7)]
    np.testing.assert_array_equal(np.concatenate(list(b["x"] for b in whole), axis=1), x)
    assert list(on0.batch_list(2).with_dataset(on1).bounds) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    odd = NpzDataset({"x": np.zeros((3, 7, 3), np.float32)}, model)  # 3 samples on axis 0
    dropped = odd.batch_list(2, drop_last=True)  # 2 of 3: whole batches of the whole dataset
    assert list(dropped.with_dataset(NpzDataset({"x": np.zeros((3, 7, 3), np.float32)}, model,
                                                 batch_axis="x:1")).bounds) == [(0, 2), (2, 4), (4, 6)]
    for part in (on0.batch_list(1)[1:], on0.batch_list(1).head(1), on0.batch_list(1)[:1]):
        with pytest.raises(DataError, match="another batch axis"):
            part.with_dataset(on1)


# ---------------------------------------------------------------- data-npz survivors (session 27), by behaviour
def _graph_model(inputs, name="m"):
    """Identity per input; ``inputs``: [(name, elem_type, dims)]."""
    g = h.make_graph([h.make_node("Identity", [n], [n + "_o"], name=n + "_id") for n, _, _ in inputs], "g",
                     [h.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                     [h.make_tensor_value_info(n + "_o", t, d) for n, t, d in inputs])
    return wb.load(h.make_model(g), name=name)


def test_error_messages_name_the_file_or_the_data_and_the_input(tmp_path):
    m = _model()
    with pytest.raises(DataError, match=r"^the data has no array for model input\(s\) \['x'\]"):
        NpzDataset({"y": X}, m)
    p = tmp_path / "d.npz"
    np.savez(p, y=X)
    with pytest.raises(DataError, match="^" + re.escape(f"{p} has no array")):
        NpzDataset(str(p), m)
    words = X.astype(str)
    with pytest.raises(DataError, match=r"^the data: array 'x' has dtype <U"):
        NpzDataset({"x": words}, m)
    with pytest.raises(DataError, match=r"^data item 0: array 'x' has dtype <U"):
        list(as_feed_batches(m, [{"x": words}]))
    np.savez(p, x=X)
    with NpzDataset(str(p), m) as ds, pytest.raises(DataError, match=re.escape(f"not found in {p};")):
        ds.add_labels("nope")
    ds = NpzDataset({"x": X}, m)
    assert ds.model is m
    with pytest.raises(DataError, match="not found in the data;"):
        ds.add_labels("nope")


def test_only_the_batch_axis_is_free_and_the_message_says_which_axis_that_is():
    fixed_batch_on_1 = _graph_model([("x", T.FLOAT, [4, 2, 3])])
    ok = NpzDataset({"x": np.zeros((4, 6, 3), np.float32)}, fixed_batch_on_1, batch_axis="x:1")
    assert ok.num_samples == 6  # axis 1 holds samples (concatenated), axis 0 must match the model's 4
    on1 = _graph_model([("x", T.FLOAT, [4, "b", 3])])
    with pytest.raises(DataError, match=re.escape("dim 0 must be 4 (model shape [4, 'b', 3]) (its batch axis is 1: "
                                                  "set another with --batch-axis x:AXIS)")):
        NpzDataset({"x": np.zeros((5, 6, 3), np.float32)}, on1)
    none = _graph_model([("x", T.FLOAT, [4, 3])])
    with pytest.raises(DataError, match=re.escape("dim 0 must be 4 (model shape [4, 3])") + "$"):
        NpzDataset({"x": np.zeros((5, 3), np.float32)}, none, batch_axis="x:none")


def test_any_float_feeds_a_float_input_and_object_data_is_refused_even_for_string_inputs():
    ds = NpzDataset({"x": X.astype(np.float16)}, _model())
    got = next(iter(ds.batch_list(10)))["x"]
    assert got.dtype == np.float32 and np.array_equal(got, X.astype(np.float16).astype(np.float32))
    strings = _graph_model([("s", T.STRING, ["n"])])
    with pytest.raises(DataError, match="array 's' has dtype object"):
        list(as_feed_batches(strings, [{"s": np.array(["a", "b"], dtype=object)}]))


def test_sample_counts_without_any_batch_axis_and_when_they_disagree():
    one = NpzDataset({"x": np.arange(3, dtype=np.float32)}, _graph_model([("x", T.FLOAT, [3])]), batch_axis="x:none")
    assert one.num_samples == 1 and [b["x"].tolist() for b in one.batch_list()] == [[0.0, 1.0, 2.0]]
    two = _graph_model([("x", T.FLOAT, ["n", 3]), ("y", T.FLOAT, ["n", 3])])
    with pytest.raises(DataError, match=re.escape("{'x': 5, 'y': 4} (batch axes {'x': 0, 'y': 0})")):
        NpzDataset({"x": np.zeros((5, 3), np.float32), "y": np.zeros((4, 3), np.float32)}, two)


def test_inputs_held_whole_must_fit_the_memory_budget_together(monkeypatch):
    """Inputs without a batch axis are read whole once: 400 + 400 bytes here must fit the budget together."""
    m = _graph_model([("x", T.FLOAT, ["n", 3]), ("a", T.FLOAT, [100]), ("b", T.FLOAT, [100])])
    arrays = {"x": X, "a": np.ones(100, np.float32), "b": np.ones(100, np.float32)}
    monkeypatch.setenv("WORKBENCH_MAX_DATA_BYTES", "800")  # exactly what is held: fits
    ds = NpzDataset(arrays, m)
    np.testing.assert_array_equal(next(iter(ds.batch_list(4)))["b"], arrays["b"])
    monkeypatch.setenv("WORKBENCH_MAX_DATA_BYTES", "799")
    with pytest.raises(DataError, match="input 'b' .* must be held whole"):
        NpzDataset(arrays, m)


def _counted_opens(monkeypatch, ds):
    opens = []
    zf = ds.reader._zf
    real = zf.open
    monkeypatch.setattr(zf, "open", lambda info, *a, **k: opens.append(info.filename) or real(info, *a, **k))
    return opens


def test_one_pass_over_compressed_batches_decompresses_each_member_once(tmp_path, monkeypatch):
    """NpzReader's promise, kept through NpzDataset: reading batches in order (iterating Batches, the NaN/Inf
    scan) keeps one decompression stream per member for the pass instead of reopening it per batch."""
    p = tmp_path / "c.npz"
    np.savez_compressed(p, x=X)
    with NpzDataset(str(p), _model()) as ds:
        opens = _counted_opens(monkeypatch, ds)
        got = [f["x"] for f in ds.batch_list(2)]
        np.testing.assert_array_equal(np.concatenate(got), X)
        assert opens == ["x.npy"]  # 5 batches, one stream
        opens.clear()
        ds.check_finite(rows=2)
        assert opens == ["x.npy"]


@pytest.mark.parametrize("shape,axis,order,held", [
    ((2, 10, 3), 1, "C", True),    # a batch is 2 runs of bytes in a compressed stream: held whole
    ((10, 4, 3), 0, "F", True),    # F order: a batch along axis 0 is spread over the whole member
    ((4, 10), 1, "F", False),      # F order, last axis: one run per batch, read per batch
    ((2, 10, 3), 1, "F", True),
    ((10, 4, 3), 0, "C", False),
])
def test_compressed_inputs_are_held_whole_exactly_when_a_batch_is_not_one_run(tmp_path, shape, axis, order, held):
    a = np.asarray(np.arange(math.prod(shape), dtype=np.float32).reshape(shape), order=order)
    dims = [d if i != axis else "n" for i, d in enumerate(shape)]
    m = _graph_model([("x", T.FLOAT, dims)])
    for save, kind in ((np.savez_compressed, "compressed"), (np.savez, "stored")):
        p = tmp_path / f"{kind}.npz"
        save(p, x=a)
        with NpzDataset(str(p), m) as ds:
            whole_at_open = ds.reader.reads
            got = [f["x"] for f in ds.batch_list(4)]
            np.testing.assert_array_equal(np.concatenate(got, axis=axis), a)
            assert whole_at_open == (1 if held and kind == "compressed" else 0), kind
            # stored members are read at offsets: always per batch (3 batches of 10 samples)
            assert ds.reader.reads == whole_at_open + (0 if held and kind == "compressed" else 3), kind


def test_nan_scan_reads_16_mib_of_float_inputs_per_step_and_names_the_samples():
    """The scan's step is 16 MiB over the bytes of a sample's *float* inputs: x is 2.125 MiB per sample
    (557056 float32), so 7 samples per step; the int ids input (2 MiB per sample) does not count. The
    NaN in sample 7 is reported in the second step, samples 7..9."""
    m = _graph_model([("x", T.FLOAT, ["n", 557056]), ("ids", T.INT64, ["n", 262144])])
    x = np.zeros((10, 557056), np.float32)
    x[7, 5] = np.nan
    ds = NpzDataset({"x": x, "ids": np.zeros((10, 262144), np.int64)}, m)
    with pytest.raises(DataError, match=re.escape("input 'x' has 1 NaN/Inf value(s) in samples 7..9")):
        ds.check_finite()


def test_nan_scan_of_samples_over_16_mib_reads_one_sample_per_step():
    m = _graph_model([("x", T.FLOAT, ["n", 4456448])])  # 17 MiB per sample
    x = np.zeros((3, 4456448), np.float32)
    x[1, 0] = np.inf
    with pytest.raises(DataError, match=re.escape("has 1 NaN/Inf value(s) in samples 1..1")):
        NpzDataset({"x": x}, m).check_finite()


def test_as_feed_batches_passes_seed_and_batch_axis_to_every_source(tmp_path):
    """None gives synthetic_inputs' batch (seed 0 unless another is given) on the chosen batch axis; a path is
    read on that axis; list items are checked and cut on it."""
    from workbench.data import synthetic_inputs

    two = _graph_model([("x", T.FLOAT, ["a", "b", 3])])
    with pytest.warns(UserWarning):
        plain = list(as_feed_batches(two, None, batch_size=3))
        seeded = list(as_feed_batches(two, None, batch_size=3, seed=7))
        on1 = list(as_feed_batches(two, None, batch_size=3, batch_axis="x:1"))
        want0, want7 = synthetic_inputs(two, None, batch=3), synthetic_inputs(two, None, seed=7, batch=3)
    np.testing.assert_array_equal(plain[0]["x"], want0["x"])
    np.testing.assert_array_equal(seeded[0]["x"], want7["x"])
    assert not np.array_equal(want0["x"], want7["x"])
    assert plain[0]["x"].shape == (3, 1, 3) and on1[0]["x"].shape == (1, 3, 3)
    x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    np.savez(tmp_path / "d.npz", x=x)
    assert [b["x"].shape for b in as_feed_batches(two, tmp_path / "d.npz", batch_size=2, batch_axis="x:1")] == \
        [(2, 2, 3), (2, 2, 3), (2, 1, 3)]
    cut = list(as_feed_batches(two, [{"x": x}], limit=2, batch_axis="x:1"))  # 5 samples on axis 1, 2 kept
    np.testing.assert_array_equal(cut[0]["x"], x[:, :2])
    fixed = _graph_model([("x", T.FLOAT, [4, 3])])  # the batch axis (0) is free in a list item: 2 samples pass
    assert list(as_feed_batches(fixed, [{"x": np.zeros((2, 3), np.float32)}]))[0]["x"].shape == (2, 3)


def test_resolve_data_counts_list_samples_on_the_models_batch_axis():
    """x [2, b, 3]: the doctor's batch axis is 1, so a (2, 5, 3) item holds 5 samples and keeps 5 labels."""
    m = _graph_model([("x", T.FLOAT, [2, "b", 3])])
    batches, labels = resolve_data(m, [{"x": np.zeros((2, 5, 3), np.float32)}], np.arange(7))
    assert len(batches) == 1 and labels.tolist() == [0, 1, 2, 3, 4]


def test_limit_cut_keeps_unbatched_inputs_exact_fits_and_a_fixed_batch_on_the_chosen_axis():
    """The batch crossing the limit is cut only along batched inputs (an input without a batch axis passes
    whole); a fixed batch that fits exactly is kept; 'fixed' is judged on the batch axis in use (x:1 here)."""
    m = _graph_model([("x", T.FLOAT, ["n", 3]), ("a", T.FLOAT, [100])])
    items = [{"x": X[:4], "a": np.ones(100, np.float32)}, {"x": X[4:8], "a": np.ones(100, np.float32)}]
    got = list(as_feed_batches(m, items, limit=6))
    assert [b["x"].shape[0] for b in got] == [4, 2] and all(b["a"].shape == (100,) for b in got)
    fixed = _model(batch=2)
    pairs = [{"x": X[:2]}, {"x": X[2:4]}, {"x": X[4:6]}]
    assert [f["x"].shape[0] for f in as_feed_batches(fixed, pairs, limit=4)] == [2, 2]
    on1 = _graph_model([("x", T.FLOAT, ["a", 4, 3])])  # axis 0 is free; the override makes axis 1 (fixed 4) the batch
    quads = [{"x": np.zeros((1, 4, 3), np.float32)}] * 2
    assert [b["x"].shape for b in as_feed_batches(on1, quads, limit=6, batch_axis="x:1")] == [(1, 4, 3)]


def test_num_samples_of_reversed_and_strided_batches_counts_what_they_read():
    """9 samples in batches of 2: reversed, the short batch (8, 9) comes first; strided, every other batch."""
    b = NpzDataset({"x": X[:9]}, _model()).batch_list(2)
    for part in (b[::-1], b[::2], b[1::2], b):
        assert part.num_samples == sum(f["x"].shape[0] for f in part)
    assert b[::-1].num_samples == 9 and b[::2].num_samples == 5 and b[1::2].num_samples == 4
