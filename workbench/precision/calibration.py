"""Calibration data for INT8/FP8 recipes: validated up front, then fed to ONNX Runtime with a progress bar.

Everything is checked *before* any quantizer runs: input names, dtypes, ranks and fixed dims
(through :mod:`workbench.data`), the static batch size, NaN/Inf, and a minimum number of samples.
No calibration data is an error; synthetic data must be asked for explicitly (``calib="synthetic"``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..data import Batches, NpzDataset, as_feed_batches, model_batch_axes, samples_in, static_batch, synthetic_inputs
from ..errors import DataError, WorkbenchWarning
from ..model import Model

#: fewer calibration samples than this is a warning (with the count), not a refusal.
DEFAULT_MIN_SAMPLES = 16
DEFAULT_SYNTHETIC_SAMPLES = 64
#: Samples per calibration batch for models with a dynamic batch axis (fewer session runs than 1).
DEFAULT_CALIB_BATCH = 8


class CalibrationWarning(WorkbenchWarning):
    """Calibration runs, but on data that may not represent real inputs (too few samples)."""


@dataclass
class CalibrationSet:
    """Validated calibration batches and where they came from (for the recipe record)."""

    batches: Sequence[dict[str, np.ndarray]]  # a list, or data.Batches read one batch at a time
    num_samples: int
    source: str  # "npz:<file name>", "NpzDataset", "iterable", "synthetic"
    warning: str = ""  # e.g. fewer samples than DEFAULT_MIN_SAMPLES (recorded in the recipe)
    axes: dict = field(default_factory=dict)  # {input: batch axis or None} (for splitting runs)
    static: int | None = None  # the batch size the model fixes (then batches are never split)
    runs: dict = field(default_factory=dict)  # collect_ranges' stats (session runs, samples per run, bytes)

    def to_json(self) -> dict:
        out = {"source": self.source, "num_samples": self.num_samples, "num_batches": len(self.batches)}
        if self.warning:
            out["warning"] = self.warning
        if self.runs:
            out["runs"] = dict(self.runs)
        return out


@dataclass
class CalibrationData:
    """Calibration data with its options, accepted wherever ``calib=`` is (``build_variants``, ``run_flow``,
    ``compare_outputs``, ``make_variant``)::

        calib = CalibrationData("calib.npz", min_samples=8, batch_axis="state:1")

    ``source``: a ``.npz`` path, an NpzDataset, an iterable of feed dicts or ``"synthetic"``;
    ``min_samples``: refuse fewer samples (None: fewer than 16 warns); ``batch_axis``: batch-axis overrides.
    """

    source: Any
    min_samples: int | None = None
    batch_axis: Any = None

    def __str__(self) -> str:
        return str(self.source) if isinstance(self.source, (str, os.PathLike)) else type(self.source).__name__


def prepare_calibration(model: Model, calib: Any, *, num_calib: int | None = None,
                        min_samples: int | None = None, batch_size: int | None = None,
                        shapes=None, seed: int = 0, batch_axis=None) -> CalibrationSet:
    """Validate ``calib`` against ``model``; its batches are kept for the quantizer.

    Data from a file (an ``.npz`` path, an :class:`~workbench.data.NpzDataset`, or the
    :class:`~workbench.data.Batches` of another stage) is validated in one streaming pass and kept as a
    :class:`~workbench.data.Batches` sequence: the quantizer's reader reads it again one batch at a time,
    so no more than one batch of input data is held. Other iterables are materialized (a generator can
    be read only once).

    ``calib``: a ``.npz`` path, a :class:`~workbench.data.NpzDataset`, an iterable of feed dicts,
    or ``"synthetic"`` (inputs within the shape doctor's value ranges, ``num_calib`` samples, default 64).
    ``num_calib`` caps the samples used. Samples are counted along each input's batch axis
    (``batch_axis`` overrides the doctor's, e.g. ``"state:1"``).

    ``min_samples``: None (default) warns when fewer than :data:`DEFAULT_MIN_SAMPLES` (16) samples are
    given, naming the count, and calibrates anyway; an explicit number (``--min-calib-samples N``) is a
    requirement: fewer is a :class:`DataError`. No samples at all is always an error.
    """
    if calib is None:
        raise DataError(
            f"int8/fp8 calibration needs data for model {model.name!r}: pass calib=<.npz path | NpzDataset | "
            "iterable of feed dicts>",
            hint="calib='synthetic' calibrates on random data (only meaningful for timing, not accuracy)")
    if num_calib is not None and (not isinstance(num_calib, int) or num_calib < 1):
        raise DataError(f"num_calib must be a positive integer, got {num_calib!r}")
    if isinstance(calib, CalibrationData):
        min_samples = calib.min_samples if calib.min_samples is not None else min_samples
        batch_axis = calib.batch_axis if calib.batch_axis is not None else batch_axis
        calib = calib.source
    if min_samples is not None and (not isinstance(min_samples, int) or min_samples < 1):
        raise DataError(f"min_samples must be a positive integer, got {min_samples!r}")
    if isinstance(calib, NpzDataset) and batch_axis is None:
        batch_axis = calib.batch_axis_override
    axes = model_batch_axes(model, batch_axis)
    static = static_batch(model, batch_axis)
    batch_size = static or batch_size or DEFAULT_CALIB_BATCH
    if isinstance(calib, str) and calib == "synthetic":
        n = num_calib or DEFAULT_SYNTHETIC_SAMPLES
        b = static or batch_size or 1
        batches, total = [], 0
        while total < n:  # `shapes` may fix another batch than b: draw until the samples reach num_calib
            feeds = synthetic_inputs(model, shapes, seed=seed + len(batches), batch=b, batch_axis=batch_axis)
            batches.append(feeds)
            total += samples_in(feeds, axes)
        return CalibrationSet(batches, total, "synthetic", axes=axes, static=static)
    lazy = None  # batches read from a file one at a time: validated in one streaming pass, never held
    if isinstance(calib, (str, os.PathLike)):
        source = f"npz:{Path(calib).name}"
        # other keys (labels) are not inputs: ignored
        calib = NpzDataset(calib, model, allow_extra=True, batch_axis=batch_axis)
        lazy = calib.batch_list(batch_size, limit=num_calib)
    elif isinstance(calib, NpzDataset):
        source = "NpzDataset" + (f":{calib.path.name}" if calib.path else "")
        if calib.model is not model:  # made for another model: check its arrays against this one
            calib = calib.for_model(model, batch_axis)
        lazy = calib.batch_list(batch_size, limit=num_calib)
    elif isinstance(calib, Batches):  # another stage's batches (the evaluation data): keep their batching
        source = "NpzDataset" + (f":{calib.dataset.path.name}" if calib.dataset.path else "")
        if calib.dataset.model is not model:
            calib = calib.with_dataset(calib.dataset.for_model(model, batch_axis))
        lazy = calib if num_calib is None else calib.head(num_calib, whole=static is not None)
    elif isinstance(calib, dict):
        raise DataError("calib is a single dict; pass a list of feed dicts, an NpzDataset or a .npz path")
    else:
        try:
            iter(calib)
        except TypeError:
            raise DataError(f"calib must be a .npz path, an NpzDataset, an iterable of feed dicts or "
                            f"'synthetic', not {type(calib).__name__}") from None
        source = "iterable"

    def check(i: int, feeds) -> int:
        if not isinstance(feeds, dict):
            raise DataError(f"calibration item {i} is a {type(feeds).__name__}, expected a dict of input arrays")
        for name, a in feeds.items():
            if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).sum())
                raise DataError(f"calibration batch {i}: input {name!r} has {bad} NaN/Inf value(s)",
                                hint="clean the data before calibrating")
            ax = axes.get(name)
            if static is not None and ax is not None and a.ndim > ax and a.shape[ax] != static:
                raise DataError(f"calibration batch {i}: input {name!r} has batch {a.shape[ax]} on axis {ax}, "
                                f"the model fixes the batch size to {static}")
        return samples_in(feeds, axes)

    batches: Sequence[dict[str, np.ndarray]]
    total = 0
    if lazy is not None:
        for i, feeds in enumerate(lazy):
            total += check(i, feeds)
        batches = lazy
    else:
        batches = []
        for i, feeds in enumerate(as_feed_batches(model, calib, batch_size=batch_size, batch_axis=batch_axis)):
            n = check(i, feeds)
            if num_calib is not None and total + n > num_calib:
                keep = num_calib - total
                if keep <= 0 or (static is not None and keep < static):
                    break
                feeds = {k: v if axes.get(k) is None or v.ndim <= axes[k] else
                         v[(slice(None),) * axes[k] + (slice(0, keep),)] for k, v in feeds.items()}
                n = keep
            batches.append(feeds)
            total += n
            if num_calib is not None and total >= num_calib:
                break
    if total == 0:
        raise DataError(f"calibration got no samples for {model.name!r}",
                        hint="the data holds fewer samples than the model's fixed batch size?")
    if min_samples is not None and total < min_samples:
        raise DataError(f"calibration got {total} sample(s) for {model.name!r}; --min-calib-samples asks for at "
                        f"least {min_samples}", hint="give more samples or a lower --min-calib-samples")
    note = ""
    if min_samples is None and total < DEFAULT_MIN_SAMPLES:
        note = (f"calibrating {model.name!r} on only {total} sample(s) (fewer than {DEFAULT_MIN_SAMPLES}): "
                "scales may not represent real inputs; give more data, or --min-calib-samples N to require N")
        warnings.warn(note, CalibrationWarning, stacklevel=2)
    return CalibrationSet(batches, total, source, warning=note, axes=axes, static=static)


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next`` + iteration), without importing
    ``onnxruntime.quantization`` when this module loads (``workbench inspect`` never calibrates). ORT's ABC
    recognises any class with a callable ``get_next`` as a subclass (its ``__subclasshook__``)."""

    def get_next(self) -> dict | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        result = self.get_next()
        if result is None:
            raise StopIteration
        return result


class ProgressReader(_Reader):
    """An ONNX Runtime ``CalibrationDataReader`` over validated batches, with a tqdm bar."""

    def __init__(self, cset: CalibrationSet, *, progress: bool = True, desc: str = "calibrating"):
        self._batches = cset.batches
        self._progress = progress
        self._desc = desc
        self._it: Iterator | None = None
        self._bar = None
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._it, None)
        if item is None:
            self.close()
        elif self._bar is not None:
            self._bar.update(1)
        return item

    def __len__(self) -> int:
        return len(self._batches)

    def rewind(self) -> None:
        self.close()
        self._it = iter(self._batches)
        if self._progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=len(self._batches), desc=self._desc, unit="batch", leave=False)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.close()
        self._it = iter(self._batches[start_index:end_index])

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ------------------------------------------------------------------------------ bounded-memory calibration
#: What the full tensors one calibration run hands back may take (histogram calibrators: entropy,
#: percentile, distribution). Runs are cut to fewer samples to stay under it (models with a dynamic
#: batch axis; a fixed batch runs as it is).
DEFAULT_CALIB_MEMORY = 1 << 30


class _OneBatch(_Reader):
    """A reader of exactly one feed dict (the calibrator is fed one run at a time)."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self._feeds: dict[str, np.ndarray] | None = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, self._feeds = self._feeds, None
        return feeds


class _SizedSession:
    """An ONNX Runtime session that remembers how many bytes its last run returned."""

    def __init__(self, session):
        self._session = session
        self.last_bytes = 0

    def run(self, *args, **kwargs):
        out = self._session.run(*args, **kwargs)
        self.last_bytes = int(sum(getattr(o, "nbytes", 0) for o in out))
        return out

    def __getattr__(self, name):
        return getattr(self._session, name)


def _priority_session(path: str, providers):
    """The calibrator's session (optimizations off, as ORT's own) with PRIORITY_BASED execution order.

    ORT's DEFAULT order is a reverse depth-first walk from the graph outputs; the augmented MinMax graph
    has a ReduceMin/ReduceMax output for every calibrated tensor, so the whole network runs first and
    every activation stays alive until its reductions run at the end: a 32-sample run of a 672-node
    detector held 8.8 GB. In node order (the reductions sit right after their producers) each activation
    is freed as in plain inference (1.1 GB).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=providers or ["CPUExecutionProvider"])


def _can_split(feeds: dict[str, np.ndarray], axes: dict, n: int) -> bool:
    batched = [(k, v) for k, v in feeds.items() if axes.get(k) is not None and np.ndim(v) > axes[k]]
    return bool(batched) and all(np.shape(v)[axes[k]] == n for k, v in batched)


def _cut(feeds: dict[str, np.ndarray], axes: dict, start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v if axes.get(k) is None or np.ndim(v) <= axes[k] else
            v[(slice(None),) * axes[k] + (slice(start, stop),)] for k, v in feeds.items()}


def collect_ranges(model_path: str | Path, augmented_path: str | Path, op_types, method, calib_opts: dict,
                   cset: CalibrationSet, *, progress: bool = True, desc: str = "calibrating",
                   run_samples: int = DEFAULT_CALIB_BATCH, memory_budget: int = DEFAULT_CALIB_MEMORY):
    """Activation ranges of ``model_path`` over ``cset`` with ONNX Runtime's calibrators, in memory that
    does not grow with the number of samples: ``(TensorsData, stats)``.

    - the calibrator is fed one session run at a time and folds it before the next (MinMax: min/max
      merged exactly; histogram methods: histograms merged, as ORT's ``CalibStridedCalibration``);
    - a batch of a model with a dynamic batch axis is cut into runs of at most ``run_samples`` samples;
      the first run holds one sample and measures what a sample's calibrated tensors take, so histogram
      calibrators (which get every full tensor back) run at most ``memory_budget`` bytes at a time;
    - MinMax runs in node order (:func:`_priority_session`), freeing each activation after its reductions.

    ``stats``: runs, samples, max_run_samples, max_run_bytes (bytes the calibrator held after one run),
    execution_order, memory_budget.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    cal = create_calibrator(model_path, op_types, augmented_model_path=str(augmented_path),
                            calibrate_method=method, extra_options=dict(calib_opts))
    order = "default"
    if method == CalibrationMethod.MinMax:  # a second session (tens of ms) in node order
        cal.infer_session = _priority_session(cal.augmented_model_path, cal.execution_providers)
        order = "priority_based"
    session = cal.infer_session = _SizedSession(cal.infer_session)
    stats = {"runs": 0, "samples": 0, "max_run_samples": 0, "max_run_bytes": 0, "execution_order": order,
             "memory_budget": int(memory_budget)}
    per_run = 1  # the first run measures a sample
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cset.num_samples, desc=desc, unit="sample", leave=False)
    try:
        for feeds in cset.batches:
            n = samples_in(feeds, cset.axes)
            split = cset.static is None and _can_split(feeds, cset.axes, n)
            start = 0
            while start < n:
                k = min(per_run, n - start) if split else n
                run = _cut(feeds, cset.axes, start, start + k) if split and k < n else feeds
                cal.collect_data(_OneBatch(run))
                stats["runs"] += 1
                stats["samples"] += k
                stats["max_run_samples"] = max(stats["max_run_samples"], k)
                stats["max_run_bytes"] = max(stats["max_run_bytes"], session.last_bytes)
                if stats["runs"] == 1:
                    per_sample = max(1, session.last_bytes // max(1, k))
                    per_run = max(1, min(int(run_samples), int(memory_budget) // per_sample))
                if bar is not None:
                    bar.update(k)
                start += k
        ranges = cal.compute_data()
    finally:
        if bar is not None:
            bar.close()
        del cal, session
    return ranges, stats
