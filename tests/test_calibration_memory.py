"""INT8 calibration in memory that does not grow with the number of samples (issue #15).

ONNX Runtime's calibrators keep whatever ``collect_data`` is given until it returns: the histogram
calibrators every full tensor of every batch, MinMax every batch's reductions. ``workbench report``
handed them one 32-sample batch of a 672-node detector and peaked at 9.1 GB. ``collect_ranges`` feeds
them one run at a time (runs of at most 8 samples; fewer when a histogram calibrator's tensors would
exceed the budget), so what they hold is one run's worth however many samples there are.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from workbench import load
from workbench.precision import make_variant
from workbench.precision.calibration import DEFAULT_CALIB_BATCH, collect_ranges, prepare_calibration

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "sample_models" / "digits_cnn.onnx"
CALIB = ROOT / "sample_models" / "digits_calib.npz"


def _images(n: int) -> np.ndarray:
    return np.load(CALIB)["image"][:n]


class HeldSpy:
    """Records, every time an ORT calibrator drops what it collected, how many runs and bytes it held."""

    def __init__(self, monkeypatch):
        from onnxruntime.quantization import calibrate

        self.runs: list[int] = []
        self.bytes: list[int] = []
        for cls in (calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater):
            original = cls.clear_collected_data

            def clear(cal, _original=original):
                held = getattr(cal, "intermediate_outputs", [])
                if held:
                    self.runs.append(len(held))
                    self.bytes.append(sum(getattr(a, "nbytes", 0) for run in held for a in run if a is not None))
                return _original(cal)

            monkeypatch.setattr(cls, "clear_collected_data", clear)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_what_the_calibrator_holds_does_not_grow_with_samples(monkeypatch, method):
    held = {}
    for n in (16, 64):
        spy = HeldSpy(monkeypatch)
        # one batch of n samples: what the report hands over (its data batches)
        v = make_variant(str(DIGITS), "int8", calib=[{"image": _images(n)}], calibration_method=method,
                         progress=False)
        runs = v.recipe["calibration"]["runs"]
        assert runs["samples"] == n
        assert runs["max_run_samples"] <= DEFAULT_CALIB_BATCH
        # the first run measures one sample, then runs of 8
        assert runs["runs"] == 1 + math.ceil((n - 1) / DEFAULT_CALIB_BATCH)
        assert max(spy.runs) == 1  # the calibrator never holds two runs
        held[n] = max(spy.bytes)
    assert held[64] == held[16]  # 4x the samples, the same bytes held at once


def test_histogram_runs_shrink_to_the_memory_budget(tmp_path):
    from onnxruntime.quantization import CalibrationMethod

    model = load(str(DIGITS))
    inferred = tmp_path / "inferred.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(model.proto_with_data()), str(inferred))
    cset = prepare_calibration(model, [{"image": _images(32)}])
    _, roomy = collect_ranges(inferred, tmp_path / "a.onnx", ["Conv", "Gemm", "MatMul"], CalibrationMethod.Entropy,
                              {"num_bins": 128}, cset, progress=False)
    per_sample = roomy["max_run_bytes"] / roomy["max_run_samples"]
    _, tight = collect_ranges(inferred, tmp_path / "b.onnx", ["Conv", "Gemm", "MatMul"], CalibrationMethod.Entropy,
                              {"num_bins": 128}, cset, progress=False, memory_budget=int(2.5 * per_sample))
    assert roomy["max_run_samples"] == DEFAULT_CALIB_BATCH
    assert tight["max_run_samples"] == 2 and tight["runs"] == 1 + math.ceil(31 / 2)
    assert tight["max_run_bytes"] <= 2.5 * per_sample
    assert tight["samples"] == roomy["samples"] == 32


def test_streamed_minmax_ranges_equal_one_shot(tmp_path):
    """Folding run by run gives exactly ORT's one-shot ranges (min of mins, max of maxes)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from workbench.precision.calibration import ProgressReader

    model = load(str(DIGITS))
    inferred = tmp_path / "inferred.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(model.proto_with_data()), str(inferred))
    cset = prepare_calibration(model, [{"image": _images(40)}, {"image": _images(64)[40:]}])
    ops = ["Conv", "Gemm", "MatMul", "Relu"]
    ours, stats = collect_ranges(inferred, tmp_path / "a.onnx", ops, CalibrationMethod.MinMax, {}, cset,
                                 progress=False)
    cal = create_calibrator(str(inferred), ops, augmented_model_path=str(tmp_path / "b.onnx"),
                            calibrate_method=CalibrationMethod.MinMax)
    cal.collect_data(ProgressReader(cset, progress=False))
    theirs = cal.compute_data()
    assert stats["execution_order"] == "priority_based" and stats["samples"] == 64
    assert set(ours.data) == set(theirs.data) and len(ours.data) > 5
    for name in theirs.data:
        np.testing.assert_array_equal(np.asarray(ours.data[name].range_value),
                                      np.asarray(theirs.data[name].range_value), err_msg=name)


def test_fixed_batch_runs_are_not_split(tmp_path):
    """A model that fixes its batch size is fed its batches as they are."""
    from onnxruntime.quantization import CalibrationMethod

    proto = onnx.load(str(DIGITS))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    for vi in list(proto.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(proto), str(fixed))
    model = load(str(fixed))
    images = _images(16)
    cset = prepare_calibration(model, [{"image": images[i:i + 4]} for i in range(0, 16, 4)])
    _, stats = collect_ranges(fixed, tmp_path / "a.onnx", ["Conv"], CalibrationMethod.MinMax, {}, cset,
                              progress=False)
    assert stats["runs"] == 4 and stats["max_run_samples"] == 4 and stats["samples"] == 16
