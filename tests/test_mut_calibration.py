"""Behaviour of precision/calibration.py that its mutants showed untested (issue #23 part 1).

Real inputs only: small graphs built with onnx.helper (a dynamic batch on axis 0, a recurrent-style batch on
axis 1, a fixed batch of 2), the bundled digits model and its calibration .npz, real ONNX Runtime
calibrators. Expected values are computed independently with numpy (sample counts, min/max ranges).
Fixtures are function-scoped: mutmut credits a test only with what its own setup/call executed.
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench import load
from workbench.data import NpzDataset
from workbench.errors import DataError
from workbench.precision.calibration import (DEFAULT_CALIB_BATCH, DEFAULT_MIN_SAMPLES, DEFAULT_SYNTHETIC_SAMPLES,
                                             CalibrationData, CalibrationSet, CalibrationWarning, ProgressReader,
                                             collect_ranges, prepare_calibration)

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "sample_models" / "digits_cnn.onnx"
CALIB = ROOT / "sample_models" / "digits_calib.npz"


def _relu_model(tmp_path: Path, batch, *, name="relu.onnx", shape_tail=(3,), axis=0, extra_const_input=False):
    """y = 2 * Relu(x) (+ b): x is [batch, 3] (axis 0) or [2, batch, 3] (axis 1)."""
    dims = [batch, *shape_tail] if axis == 0 else [2, batch, *shape_tail]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Mul", ["r", "two"], ["m"], name="mul")]
    out = "m"
    if extra_const_input:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, list(shape_tail)))
        nodes.append(helper.make_node("Add", ["m", "b"], ["y"], name="add"))
        out = "y"
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["y"], name="id"))
        out = "y"
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          initializer=[two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def _x(n: int, seed: int = 0, axis: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, 3) if axis == 0 else (2, n, 3)
    return rng.normal(size=shape).astype(np.float32)


def _sizes(batches, axis=0, name="x"):
    return [int(b[name].shape[axis]) for b in batches]


# ------------------------------------------------------------------------------------------ records
def test_calibration_set_json_names_source_samples_batches_warning_and_runs():
    b = [{"x": np.zeros((2, 3), np.float32)}, {"x": np.zeros((1, 3), np.float32)}]
    plain = CalibrationSet(b, 3, "iterable")
    assert plain.to_json() == {"source": "iterable", "num_samples": 3, "num_batches": 2}
    runs = {"runs": 4, "samples": 3}
    full = CalibrationSet(b, 3, "synthetic", warning="few", runs=runs)
    js = full.to_json()
    assert js == {"source": "synthetic", "num_samples": 3, "num_batches": 2, "warning": "few", "runs": runs}
    js["runs"]["runs"] = 99  # the record is a copy
    assert full.runs["runs"] == 4


def test_calibration_data_str_names_the_file_or_the_kind_of_source(tmp_path):
    assert str(CalibrationData("calib.npz")) == "calib.npz"
    assert str(CalibrationData(tmp_path / "c.npz")) == str(tmp_path / "c.npz")
    assert str(CalibrationData([{"x": 1}])) == "list"
    assert str(CalibrationData(iter([]))) == "list_iterator"


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("num_calib", [0, -3, 2.5, "4"])
def test_num_calib_must_be_a_positive_integer(tmp_path, num_calib):
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.raises(DataError, match="num_calib must be a positive integer"):
        prepare_calibration(model, [{"x": _x(4)}], num_calib=num_calib)


@pytest.mark.parametrize("min_samples", [0, -1, 1.5])
def test_min_samples_must_be_a_positive_integer(tmp_path, min_samples):
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.raises(DataError, match="min_samples must be a positive integer"):
        prepare_calibration(model, [{"x": _x(4)}], min_samples=min_samples)
    with pytest.raises(DataError, match="min_samples must be a positive integer"):
        prepare_calibration(model, CalibrationData([{"x": _x(4)}], min_samples=min_samples))


def test_one_is_a_valid_num_calib_and_min_samples(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    cs = prepare_calibration(model, [{"x": _x(4)}], num_calib=1, min_samples=1)
    assert cs.num_samples == 1 and _sizes(cs.batches) == [1]


def test_missing_single_dict_and_non_iterable_data_are_refused(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.raises(DataError, match="needs data"):
        prepare_calibration(model, None)
    with pytest.raises(DataError, match="single dict"):
        prepare_calibration(model, {"x": _x(4)})
    with pytest.raises(DataError, match="not int"):
        prepare_calibration(model, 7)


def test_an_item_that_is_not_a_dict_is_named(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.raises(DataError, match=r"item 1 is a list, expected a dict"):
        prepare_calibration(model, [{"x": _x(2)}, [_x(2)]])


def test_nan_and_inf_are_counted_and_refused(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    bad = _x(4)
    bad[1, 2] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(DataError, match=r"batch 1: input 'x' has 2 NaN/Inf"):
        prepare_calibration(model, [{"x": _x(4)}, {"x": bad}])


def test_integer_inputs_are_not_checked_for_nan(tmp_path):
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, None)
    g = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "ids.onnx"))
    model = load(str(tmp_path / "ids.onnx"))
    cs = prepare_calibration(model, [{"ids": np.arange(6, dtype=np.int64).reshape(2, 3)}], min_samples=2)
    assert cs.num_samples == 2


def test_a_batch_that_differs_from_the_fixed_batch_is_refused(tmp_path):
    model = load(str(_relu_model(tmp_path, 2)))
    with pytest.raises(DataError, match=r"batch 1: input 'x' has batch 3 on axis 0, the model fixes the batch size to 2"):
        prepare_calibration(model, [{"x": _x(2)}, {"x": _x(3)}])
    # batch axis 1 (a recurrent state [2, batch, 3]): the size is read on axis 1, not axis 0
    model1 = load(str(_relu_model(tmp_path, 2, name="ax1.onnx", axis=1)))
    cs = prepare_calibration(model1, [{"x": _x(2, axis=1)}] * 3, batch_axis="x:1", min_samples=6)
    assert cs.num_samples == 6 and cs.static == 2
    with pytest.raises(DataError, match=r"has batch 3 on axis 1"):
        prepare_calibration(model1, [{"x": _x(3, axis=1)}], batch_axis="x:1")


def test_fewer_samples_than_the_fixed_batch_is_no_data(tmp_path):
    model = load(str(_relu_model(tmp_path, 4)))
    with pytest.raises(DataError, match="got no samples"):
        prepare_calibration(model, [{"x": _x(4)}], num_calib=3)


# ------------------------------------------------------------------------------------------ counting
def test_num_calib_cuts_an_iterable_at_the_exact_sample(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    data = [{"x": _x(3, seed=i)} for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, data, num_calib=7)
        assert cs.num_samples == 7 and _sizes(cs.batches) == [3, 3, 1] and cs.source == "iterable"
        np.testing.assert_array_equal(cs.batches[2]["x"], data[2]["x"][:1])
        np.testing.assert_array_equal(cs.batches[0]["x"], data[0]["x"])
        cs = prepare_calibration(model, data, num_calib=6)
        assert cs.num_samples == 6 and _sizes(cs.batches) == [3, 3]
        cs = prepare_calibration(model, data, num_calib=100)
        assert cs.num_samples == 9 and _sizes(cs.batches) == [3, 3, 3]
        cs = prepare_calibration(model, data)
        assert cs.num_samples == 9 and len(cs.batches) == 3


def test_num_calib_cuts_on_the_batch_axis_and_keeps_unbatched_inputs(tmp_path):
    model = load(str(_relu_model(tmp_path, "N", axis=1)))
    data = [{"x": _x(4, seed=i, axis=1)} for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, data, num_calib=6, batch_axis="x:1")
    assert cs.num_samples == 6 and _sizes(cs.batches, axis=1) == [4, 2]
    np.testing.assert_array_equal(cs.batches[1]["x"], data[1]["x"][:, :2])
    modelb = load(str(_relu_model(tmp_path, "N", name="b.onnx", extra_const_input=True)))
    bias = np.ones(3, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(modelb, [{"x": _x(3), "b": bias}, {"x": _x(3), "b": bias}], num_calib=4)
    assert cs.num_samples == 4 and _sizes(cs.batches) == [3, 1]
    np.testing.assert_array_equal(cs.batches[1]["b"], bias)


def test_a_fixed_batch_is_never_cut_below_its_size(tmp_path):
    model = load(str(_relu_model(tmp_path, 2)))
    data = [{"x": _x(2, seed=i)} for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, data, num_calib=5)
    assert cs.num_samples == 4 and _sizes(cs.batches) == [2, 2]


def test_few_samples_warn_with_the_count_unless_a_minimum_is_set(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    few = DEFAULT_MIN_SAMPLES - 1
    with pytest.warns(CalibrationWarning, match=rf"only {few} sample\(s\) \(fewer than {DEFAULT_MIN_SAMPLES}\)"):
        cs = prepare_calibration(model, [{"x": _x(few)}])
    assert f"only {few} sample" in cs.warning and cs.to_json()["warning"] == cs.warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enough = prepare_calibration(model, [{"x": _x(DEFAULT_MIN_SAMPLES)}])
        assert enough.warning == "" and "warning" not in enough.to_json()
        required = prepare_calibration(model, [{"x": _x(3)}], min_samples=3)
        assert required.warning == "" and required.num_samples == 3
        via = prepare_calibration(model, CalibrationData([{"x": _x(3)}], min_samples=3), min_samples=50)
        assert via.num_samples == 3
    with pytest.raises(DataError, match="got 3 sample"):
        prepare_calibration(model, [{"x": _x(3)}], min_samples=4)
    with pytest.raises(DataError, match="got 3 sample"):
        prepare_calibration(model, CalibrationData([{"x": _x(3)}]), min_samples=4)


def test_calibration_data_batch_axis_applies_and_falls_back(tmp_path):
    model = load(str(_relu_model(tmp_path, "N", axis=1)))
    data = [{"x": _x(5, axis=1)}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        own = prepare_calibration(model, CalibrationData(data, batch_axis="x:1"), batch_axis="x:0")
        assert own.num_samples == 5 and own.axes == {"x": 1}
        fallback = prepare_calibration(model, CalibrationData(data), batch_axis="x:1")
        assert fallback.num_samples == 5 and fallback.axes == {"x": 1}
        axis0 = prepare_calibration(model, CalibrationData(data), batch_axis="x:0")
        assert axis0.num_samples == 2


# ------------------------------------------------------------------------------------------ synthetic
def test_synthetic_batches_cover_num_calib_in_batches_of_the_batch_size(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    cs = prepare_calibration(model, "synthetic", num_calib=10, batch_size=4)
    assert cs.source == "synthetic" and _sizes(cs.batches) == [4, 4, 4] and cs.num_samples == 12
    assert cs.static is None and cs.axes == {"x": 0}
    default = prepare_calibration(model, "synthetic")
    per = DEFAULT_CALIB_BATCH
    assert default.num_samples == math.ceil(DEFAULT_SYNTHETIC_SAMPLES / per) * per
    assert _sizes(default.batches) == [per] * math.ceil(DEFAULT_SYNTHETIC_SAMPLES / per)
    # every batch is drawn from its own seed: seed + i
    assert not np.array_equal(cs.batches[0]["x"], cs.batches[1]["x"])
    shifted = prepare_calibration(model, "synthetic", num_calib=8, batch_size=4, seed=1)
    np.testing.assert_array_equal(shifted.batches[0]["x"], cs.batches[1]["x"])


def test_synthetic_batches_of_a_fixed_batch_model(tmp_path):
    model = load(str(_relu_model(tmp_path, 2)))
    cs = prepare_calibration(model, "synthetic", num_calib=5, batch_size=4)
    assert cs.static == 2 and _sizes(cs.batches) == [2, 2, 2] and cs.num_samples == 6


# ------------------------------------------------------------------------------------------ files
def _digits_count() -> int:
    with np.load(CALIB) as z:
        return int(z["image"].shape[0])


def test_an_npz_path_is_read_in_batches_of_the_batch_size():
    model = load(str(DIGITS))
    n = _digits_count()
    cs = prepare_calibration(model, str(CALIB))
    assert cs.source == "npz:digits_calib.npz" and cs.num_samples == n
    assert len(cs.batches) == math.ceil(n / DEFAULT_CALIB_BATCH)
    cs5 = prepare_calibration(model, CALIB, batch_size=5, num_calib=22)
    assert cs5.num_samples == 22 and [b["image"].shape[0] for b in cs5.batches] == [5, 5, 5, 5, 2]
    with np.load(CALIB) as z:
        np.testing.assert_array_equal(cs5.batches[4]["image"], z["image"][20:22])


def test_an_npz_dataset_keeps_its_name_and_is_checked_against_the_model():
    model = load(str(DIGITS))
    n = _digits_count()
    ds = NpzDataset(CALIB, model, allow_extra=True)
    with pytest.warns(CalibrationWarning, match="only 9 sample"):
        cs = prepare_calibration(model, ds, num_calib=9, batch_size=4)
    assert cs.source == "NpzDataset:digits_calib.npz" and cs.num_samples == 9
    assert [b["image"].shape[0] for b in cs.batches] == [4, 4, 1]
    other = load(str(DIGITS))  # the dataset was opened for another Model object
    cs2 = prepare_calibration(other, ds)
    assert cs2.num_samples == n


def test_another_stages_batches_keep_their_batching():
    model = load(str(DIGITS))
    n = _digits_count()
    ds = NpzDataset(CALIB, model, allow_extra=True)
    batches = ds.batch_list(6)
    cs = prepare_calibration(model, batches)
    assert cs.source == "NpzDataset:digits_calib.npz" and cs.num_samples == n
    assert len(cs.batches) == math.ceil(n / 6)
    with pytest.warns(CalibrationWarning, match="only 8 sample"):
        head = prepare_calibration(model, batches, num_calib=8)
    assert head.num_samples == 8 and [b["image"].shape[0] for b in head.batches] == [6, 2]
    with pytest.warns(CalibrationWarning, match="only 7 sample"):
        cs2 = prepare_calibration(load(str(DIGITS)), batches, num_calib=7)
    assert cs2.num_samples == 7


# ------------------------------------------------------------------------------------------ reader
@pytest.fixture
def eager_bar(monkeypatch):
    """tqdm redraws at most every 0.1 s; this real tqdm redraws on every update, so stderr shows each count."""
    import tqdm.auto

    class Eager(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            super().__init__(*a, mininterval=0, miniters=1, **k)

    monkeypatch.setattr(tqdm.auto, "tqdm", Eager)
def _cset(k=3):
    return CalibrationSet([{"x": np.full((1, 3), i, np.float32)} for i in range(k)], k, "iterable")


def test_progress_reader_reads_each_batch_once_then_none_and_rewinds():
    cs = _cset(3)
    r = ProgressReader(cs, progress=False)
    assert len(r) == 3
    got = [r.get_next() for _ in range(4)]
    assert [g["x"][0, 0] for g in got[:3]] == [0, 1, 2] and got[3] is None
    assert r.get_next() is None
    r.rewind()
    assert [f["x"][0, 0] for f in r] == [0, 1, 2]
    r.set_range(1, 3)
    assert [f["x"][0, 0] for f in r] == [1, 2]
    r.set_range(0, 1)
    assert [f["x"][0, 0] for f in r] == [0]


def test_progress_reader_shows_a_bar_by_default_and_none_when_asked(capsys, eager_bar):
    r = ProgressReader(_cset(3))
    assert len(list(r)) == 3
    err = capsys.readouterr().err
    assert "\rcalibrating: " in err and "0/3" in err and "1/3" in err and "2/3" in err and "3/3" in err
    assert re.search(r"[\d?]batch/s\]", err) and "4/3" not in err
    r = ProgressReader(_cset(3), desc="int8 digits")
    list(r)
    assert "int8 digits" in capsys.readouterr().err
    r = ProgressReader(_cset(3), progress=False)
    list(r)
    r.rewind()
    list(r)
    assert capsys.readouterr().err == ""


def test_progress_reader_closes_its_bar_at_the_end_and_on_rewind(capsys, eager_bar):
    r = ProgressReader(_cset(2), desc="calib-a")
    r.get_next()
    r.rewind()  # the first bar is closed, a new one opens
    assert [f["x"][0, 0] for f in r] == [0, 1]
    r.close()
    r.close()  # twice is fine
    err = capsys.readouterr().err
    assert "calib-a" in err and "2/2" in err


def test_ort_reads_the_progress_reader_as_a_calibration_data_reader():
    from onnxruntime.quantization import CalibrationDataReader

    r = ProgressReader(_cset(2), progress=False)
    assert isinstance(r, CalibrationDataReader)
    assert iter(r) is r
    assert next(r)["x"][0, 0] == 0 and next(r)["x"][0, 0] == 1
    with pytest.raises(StopIteration):
        next(r)


# ------------------------------------------------------------------------------------------ collect_ranges
def _ranges(path, tmp_path, cset, **kw):
    from onnxruntime.quantization import CalibrationMethod

    ranges, stats = collect_ranges(path, tmp_path / "aug.onnx", ["Relu", "Mul"], CalibrationMethod.MinMax, {},
                                   cset, progress=False, **kw)
    return {k: tuple(float(v) for v in np.asarray(ranges.data[k].range_value).ravel()) for k in ranges.data}, stats


def _expect(x: np.ndarray) -> dict:
    r = np.maximum(x, 0)
    return {"x": (float(x.min()), float(x.max())), "r": (float(r.min()), float(r.max())),
            "m": (float((2 * r).min()), float((2 * r).max()))}


def test_minmax_ranges_are_the_data_min_and_max_and_runs_are_cut(tmp_path):
    path = _relu_model(tmp_path, "N")
    model = load(str(path))
    x = _x(20, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, [{"x": x}])
    got, stats = _ranges(path, tmp_path, cs, run_samples=8)
    want = _expect(x)
    for k in want:
        assert got[k] == pytest.approx(want[k]), k
    # first run measures one sample, then runs of 8: 1 + 8 + 8 + 3
    assert stats["runs"] == 4 and stats["samples"] == 20 and stats["max_run_samples"] == 8
    assert stats["execution_order"] == "priority_based" and stats["memory_budget"] == 1 << 30
    assert stats["max_run_bytes"] > 0
    got1, one = _ranges(path, tmp_path, cs, run_samples=8, memory_budget=1)  # budget below one sample: 1 per run
    assert one["runs"] == 20 and one["max_run_samples"] == 1 and one["memory_budget"] == 1
    for k in want:
        assert got1[k] == pytest.approx(want[k]), k
    _, whole = _ranges(path, tmp_path, cs, run_samples=50)
    assert whole["runs"] == 2 and whole["max_run_samples"] == 19


def test_minmax_ranges_over_batches_cut_on_axis_1_with_an_unbatched_input(tmp_path):
    path = _relu_model(tmp_path, "N", axis=1)
    model = load(str(path))
    xs = [_x(5, seed=1, axis=1), _x(4, seed=2, axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, [{"x": a} for a in xs], batch_axis="x:1")
    got, stats = _ranges(path, tmp_path, cs, run_samples=2)
    want = _expect(np.concatenate(xs, axis=1))
    for k in want:
        assert got[k] == pytest.approx(want[k]), k
    # 5 samples: 1 + 2 + 2; 4 samples: 2 + 2
    assert stats["runs"] == 5 and stats["samples"] == 9 and stats["max_run_samples"] == 2
    pathb = _relu_model(tmp_path, "N", name="b.onnx", extra_const_input=True)
    bias = np.array([0.5, -1.0, 2.0], np.float32)
    x = _x(6, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        csb = prepare_calibration(load(str(pathb)), [{"x": x, "b": bias}])
    gotb, statsb = _ranges(pathb, tmp_path, csb, run_samples=2)
    assert statsb["runs"] == 1 + 3 and statsb["samples"] == 6
    assert gotb["x"] == pytest.approx(_expect(x)["x"])


def test_a_fixed_batch_model_runs_each_batch_whole(tmp_path):
    path = _relu_model(tmp_path, 2)
    model = load(str(path))
    xs = [_x(2, seed=i) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, [{"x": a} for a in xs])
    got, stats = _ranges(path, tmp_path, cs, run_samples=1)
    assert stats["runs"] == 3 and stats["max_run_samples"] == 2 and stats["samples"] == 6
    want = _expect(np.concatenate(xs))
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


def test_collect_ranges_shows_progress_in_samples(tmp_path, capsys, eager_bar):
    from onnxruntime.quantization import CalibrationMethod

    path = _relu_model(tmp_path, "N")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": _x(5)}])
    collect_ranges(path, tmp_path / "aug.onnx", ["Relu"], CalibrationMethod.MinMax, {}, cs, desc="calib-x")
    err = capsys.readouterr().err
    assert "calib-x" in err and "0/5" in err and "5/5" in err and re.search(r"[\d?]sample/s\]", err)
    assert "1/5" in err  # the first run holds one sample
    collect_ranges(path, tmp_path / "aug2.onnx", ["Relu"], CalibrationMethod.MinMax, {}, cs, progress=False)
    assert capsys.readouterr().err == ""
    collect_ranges(path, tmp_path / "aug3.onnx", ["Relu"], CalibrationMethod.MinMax, {}, cs)
    assert "calibrating: " in capsys.readouterr().err


def test_inputs_with_different_batch_sizes_run_whole(tmp_path):
    """x [N, 3] and z [M, 3] have independent batch dims: cutting x's samples must not cut z's rows."""
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("ReduceSum", ["z"], ["zs"], keepdims=1),
         helper.make_node("Add", ["m", "zs"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["M", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    path = tmp_path / "xz.onnx"
    onnx.save(m, str(path))
    x, s, z = _x(4, seed=5), np.float32(2.0), _x(2, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": x, "s": s, "z": z}])
    from onnxruntime.quantization import CalibrationMethod

    ranges, stats = collect_ranges(path, tmp_path / "aug.onnx", ["Mul", "Add", "ReduceSum"], CalibrationMethod.MinMax,
                                   {}, cs, progress=False, run_samples=1)
    assert stats["runs"] == 1 and stats["samples"] == 4 and stats["max_run_samples"] == 4
    zs = z.sum()
    y = x * s + zs
    want = {"x": (x.min(), x.max()), "z": (z.min(), z.max()), "zs": (zs, zs), "y": (y.min(), y.max()),
            "m": ((x * s).min(), (x * s).max())}
    for k, (lo, hi) in want.items():
        got = np.asarray(ranges.data[k].range_value, dtype=np.float64).ravel()
        np.testing.assert_allclose(got, [lo, hi], rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("providers", [None, []])
def test_the_node_order_session_defaults_to_the_cpu_provider(tmp_path, providers):
    """Without providers from the calibrator, the session asks for ONNX Runtime's CPU provider by its name."""
    import onnxruntime as ort

    from workbench.precision.calibration import _priority_session

    path = _relu_model(tmp_path, "N")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown provider name: ORT warns, prints an EP error, falls back
        sess = _priority_session(str(path), providers)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    opts = sess.get_session_options()
    assert opts.execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = _x(3)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], 2 * np.maximum(x, 0))


def test_collect_ranges_writes_the_augmented_model_where_asked_and_nothing_in_the_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    path = _relu_model(tmp_path, "N")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": _x(4)}])
    _ranges(path, tmp_path, cs)
    assert (tmp_path / "aug.onnx").is_file() and list(cwd.iterdir()) == []


def test_calibrator_options_reach_the_calibrator(tmp_path):
    """MinMax with symmetric=True: every range is (-m, m), m the largest magnitude (numpy)."""
    from onnxruntime.quantization import CalibrationMethod

    path = _relu_model(tmp_path, "N")
    x = _x(6, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": x}])
    opts = {"symmetric": True}
    ranges, _ = collect_ranges(path, tmp_path / "aug.onnx", ["Relu", "Mul"], CalibrationMethod.MinMax, opts, cs,
                               progress=False)
    assert opts == {"symmetric": True}  # the caller's dict is not changed
    m = float(np.abs(x).max())
    np.testing.assert_allclose(np.asarray(ranges.data["x"].range_value, dtype=np.float64).ravel(), [-m, m], rtol=1e-6)
    r = float(2 * np.maximum(x, 0).max())
    np.testing.assert_allclose(np.asarray(ranges.data["m"].range_value, dtype=np.float64).ravel(), [-r, r], rtol=1e-6)


def test_histogram_calibrators_run_in_the_default_order(tmp_path):
    from onnxruntime.quantization import CalibrationMethod

    path = _relu_model(tmp_path, "N")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": _x(5)}])
    _, stats = collect_ranges(path, tmp_path / "aug.onnx", ["Relu"], CalibrationMethod.Percentile,
                              {"num_bins": 64, "percentile": 99.0}, cs, progress=False)
    assert stats["execution_order"] == "default" and stats["samples"] == 5 and stats["runs"] == 1 + 1


def test_bars_leave_no_trace_when_done(tmp_path, capsys):
    """Both bars are transient (leave=False): the last thing written erases the line, no newline is left."""
    from onnxruntime.quantization import CalibrationMethod

    list(ProgressReader(_cset(2)))
    err = capsys.readouterr().err
    assert "calibrating" in err and not err.endswith("\n") and err.endswith("\r")
    path = _relu_model(tmp_path, "N")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(load(str(path)), [{"x": _x(3)}])
    collect_ranges(path, tmp_path / "aug.onnx", ["Relu"], CalibrationMethod.MinMax, {}, cs)
    err = capsys.readouterr().err
    assert "calibrating" in err and not err.endswith("\n") and err.endswith("\r")


def _free_model(tmp_path, dims, name):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / name))
    return load(str(tmp_path / name))


def test_synthetic_data_follows_the_batch_axis_and_the_shapes(tmp_path):
    model = _free_model(tmp_path, ["A", "N", 3], "an.onnx")  # the doctor picks axis 0; "x:1" moves the batch
    with pytest.warns(UserWarning, match=r"dynamic dims without --shapes set to 1: x\[0\]=A"):
        cs = prepare_calibration(model, "synthetic", num_calib=8, batch_size=4, batch_axis="x:1")
    assert [b["x"].shape for b in cs.batches] == [(1, 4, 3)] * 2 and cs.num_samples == 8 and cs.axes == {"x": 1}
    cs = prepare_calibration(model, "synthetic", num_calib=8, batch_size=4, batch_axis="x:1", shapes={"x": [3, 4, 3]})
    assert [b["x"].shape for b in cs.batches] == [(3, 4, 3)] * 2 and cs.num_samples == 8


def test_a_batch_axis_override_onto_a_fixed_dim_fixes_the_batch(tmp_path):
    model = _free_model(tmp_path, ["N", 4, 3], "n4.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, [{"x": np.ones((5, 4, 3), np.float32)}], batch_axis="x:1")
        assert cs.static == 4 and cs.num_samples == 4
        assert prepare_calibration(model, [{"x": np.ones((5, 4, 3), np.float32)}]).static is None


def test_an_npz_datasets_own_batch_axis_is_used(tmp_path):
    model = _free_model(tmp_path, ["A", "N", 3], "an.onnx")
    np.savez(tmp_path / "c.npz", x=np.ones((2, 5, 3), np.float32))
    ds = NpzDataset(tmp_path / "c.npz", model, batch_axis="x:1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, ds)
    assert cs.num_samples == 5 and cs.axes == {"x": 1}


def test_an_npz_path_with_labels_and_a_batch_axis_is_read_lazily(tmp_path):
    """Other keys (labels) are ignored; samples are counted on the batch axis given; the data stays on disk
    (a Batches sequence read one batch at a time, as the docstring promises), not a materialized list."""
    from workbench.data import Batches

    model = _free_model(tmp_path, ["A", "N", 3], "an.onnx")
    np.savez(tmp_path / "c.npz", x=np.ones((2, 5, 3), np.float32), label=np.arange(5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, tmp_path / "c.npz", batch_axis="x:1", batch_size=2)
    assert cs.source == "npz:c.npz" and cs.num_samples == 5 and cs.axes == {"x": 1}
    assert isinstance(cs.batches, Batches) and [b["x"].shape for b in cs.batches] == [(2, 2, 3), (2, 2, 3), (2, 1, 3)]


def test_in_memory_datasets_and_datasets_of_another_model(tmp_path):
    from workbench.data import Batches

    model = _free_model(tmp_path, ["A", "N", 3], "an.onnx")
    arr = np.ones((2, 5, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        mem = prepare_calibration(model, NpzDataset({"x": arr}, model))
        assert mem.source == "NpzDataset" and isinstance(mem.batches, Batches)
        mem_b = prepare_calibration(model, NpzDataset({"x": arr}, model).batch_list(1))
        assert mem_b.source == "NpzDataset"
        # a dataset opened for another Model object is re-read with this call's batch axis
        other = _free_model(tmp_path, ["A", "N", 3], "an2.onnx")
        ds = NpzDataset({"x": arr}, other)
        cs = prepare_calibration(model, ds, batch_axis="x:1", batch_size=2)
        assert isinstance(cs.batches, Batches) and cs.num_samples == 5
        assert [b["x"].shape for b in cs.batches] == [(2, 2, 3), (2, 2, 3), (2, 1, 3)]
        cs = prepare_calibration(model, ds.batch_list(1))  # same batch axis: the batching is kept
        assert cs.num_samples == 2 and [b["x"].shape for b in cs.batches] == [(1, 5, 3), (1, 5, 3)]
    # ... and checked against this model: its arrays do not fit a model whose last dim is 4
    wide = _free_model(tmp_path, ["A", "N", 4], "an4.onnx")
    with pytest.raises(DataError):
        prepare_calibration(wide, ds)
    with pytest.raises(DataError):
        prepare_calibration(wide, ds.batch_list(2))


def test_batches_of_a_fixed_batch_model_are_capped_in_whole_batches(tmp_path):
    from workbench.data import Batches

    model = load(str(_relu_model(tmp_path, 2)))
    ds = NpzDataset({"x": _x(6)}, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, ds.batch_list(2), num_calib=3)
    assert isinstance(cs.batches, Batches) and all(b["x"].shape == (2, 3) for b in cs.batches)


def test_nan_in_an_npz_file_names_its_batch(tmp_path):
    x = _x(10)
    x[5, 1] = np.nan
    np.savez(tmp_path / "c.npz", x=x)
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.raises(DataError, match=r"batch 1: input 'x' has 1 NaN/Inf"):
        prepare_calibration(model, tmp_path / "c.npz", batch_size=4)


def test_an_iterable_is_read_no_further_than_num_calib_needs(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    read = []

    def stream():
        for i in range(5):
            read.append(i)
            yield {"x": _x(3, seed=i)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cs = prepare_calibration(model, stream(), num_calib=6)
    assert cs.num_samples == 6 and read == [0, 1]


def test_the_few_samples_warning_gives_the_way_out(tmp_path):
    model = load(str(_relu_model(tmp_path, "N")))
    with pytest.warns(CalibrationWarning) as rec:
        cs = prepare_calibration(model, [{"x": _x(2)}])
    msg = str(rec[0].message)
    assert msg == cs.warning
    assert msg.endswith("scales may not represent real inputs; give more data, or --min-calib-samples N to require N")


def test_batches_of_another_stage_read_on_another_batch_axis_lose_no_sample(tmp_path):
    """Another stage's Batches (read for another Model object on its default batch axis 0: 2 samples) given
    with batch_axis='x:1' (5 samples): every sample is calibrated, none dropped; a part of those batches has
    no meaning on the other axis and is refused."""
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", "b", 3])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x_info],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "two_dyn.onnx"
    onnx.save(m, str(path))
    x = _x(5, axis=1)  # (2, 5, 3)
    evaluation = NpzDataset({"x": x}, load(path)).batch_list(4)
    assert evaluation.num_samples == 2  # axis 0
    with pytest.warns(CalibrationWarning, match="only 5 sample"):
        cs = prepare_calibration(load(path), evaluation, batch_axis="x:1")
    assert cs.num_samples == 5
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in cs.batches], axis=1), x)
    assert _sizes(cs.batches, axis=1) == [4, 1]  # the evaluation's batch size kept
    part = NpzDataset({"x": x}, load(path)).batch_list(1)[:1]
    with pytest.raises(DataError, match="another batch axis"):
        prepare_calibration(load(path), part, batch_axis="x:1")


def test_synthetic_batches_reach_num_calib_when_shapes_fix_another_batch(tmp_path):
    """shapes= pins the batch dim to 1 while batch_size asks for 4: batches of 1 are drawn until 8 samples
    are there (it gave 2 batches = 2 samples before, found by mut-quantize), each from its own seed."""
    model = _free_model(tmp_path, ["N", 2, 3], "n23.onnx")
    cs = prepare_calibration(model, "synthetic", num_calib=8, batch_size=4, shapes={"x": [1, 2, 3]})
    assert _sizes(cs.batches) == [1] * 8 and cs.num_samples == 8
    assert len({b["x"].tobytes() for b in cs.batches}) == 8
