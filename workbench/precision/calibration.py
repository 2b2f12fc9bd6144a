"""Calibration data for INT8/FP8 recipes: validated up front, then fed to ONNX Runtime with a progress bar.

Everything is checked *before* any quantizer runs: input names, dtypes, ranks and fixed dims
(through :mod:`workbench.data`), the static batch size, NaN/Inf, and a minimum number of samples.
No calibration data is an error; synthetic data must be asked for explicitly (``calib="synthetic"``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..data import NpzDataset, as_feed_batches, input_specs, synthetic_inputs
from ..errors import DataError
from ..model import Model

DEFAULT_MIN_SAMPLES = 16
DEFAULT_SYNTHETIC_SAMPLES = 64
#: Samples per calibration batch for models with a dynamic batch axis (fewer session runs than 1).
DEFAULT_CALIB_BATCH = 8


@dataclass
class CalibrationSet:
    """Validated calibration batches and where they came from (for the recipe record)."""

    batches: list[dict[str, np.ndarray]]
    num_samples: int
    source: str  # "npz:<file name>", "NpzDataset", "iterable", "synthetic"

    def to_json(self) -> dict:
        return {"source": self.source, "num_samples": self.num_samples, "num_batches": len(self.batches)}


def _static_batch(model: Model) -> int | None:
    sizes = {s.shape[0] for s in input_specs(model) if s.shape and isinstance(s.shape[0], int)}
    return sizes.pop() if len(sizes) == 1 else None


def _samples_in(feeds: dict[str, np.ndarray]) -> int:
    for a in feeds.values():
        if a.ndim > 0:
            return int(a.shape[0])
    return 1


def prepare_calibration(model: Model, calib: Any, *, num_calib: int | None = None,
                        min_samples: int = DEFAULT_MIN_SAMPLES, batch_size: int | None = None,
                        shapes=None, seed: int = 0) -> CalibrationSet:
    """Validate ``calib`` against ``model`` and materialize its batches.

    ``calib``: a ``.npz`` path, a :class:`~workbench.data.NpzDataset`, an iterable of feed dicts,
    or ``"synthetic"`` (random normal inputs, ``num_calib`` samples, default 64).
    ``num_calib`` caps the samples used. Raises :class:`DataError` on any problem.
    """
    if calib is None:
        raise DataError(
            f"int8/fp8 calibration needs data for model {model.name!r}: pass calib=<.npz path | NpzDataset | "
            "iterable of feed dicts>",
            hint="calib='synthetic' calibrates on random data (only meaningful for timing, not accuracy)")
    if num_calib is not None and (not isinstance(num_calib, int) or num_calib < 1):
        raise DataError(f"num_calib must be a positive integer, got {num_calib!r}")
    static = _static_batch(model)
    batch_size = static or batch_size or DEFAULT_CALIB_BATCH
    if isinstance(calib, str) and calib == "synthetic":
        n = num_calib or DEFAULT_SYNTHETIC_SAMPLES
        b = static or batch_size or 1
        batches = [synthetic_inputs(model, shapes, seed=seed + i, batch=b) for i in range((n + b - 1) // b)]
        return CalibrationSet(batches, sum(_samples_in(x) for x in batches), "synthetic")
    if isinstance(calib, (str, os.PathLike)):
        source = f"npz:{Path(calib).name}"
        calib = NpzDataset(calib, model, allow_extra=True)  # other keys (labels) are not inputs: ignored
    elif isinstance(calib, NpzDataset):
        source = "NpzDataset" + (f":{calib.path.name}" if calib.path else "")
        if calib.model is not model:  # made for another model: check its arrays against this one
            calib = NpzDataset(calib.inputs, model)
    elif isinstance(calib, dict):
        raise DataError("calib is a single dict; pass a list of feed dicts, an NpzDataset or a .npz path")
    else:
        try:
            iter(calib)
        except TypeError:
            raise DataError(f"calib must be a .npz path, an NpzDataset, an iterable of feed dicts or "
                            f"'synthetic', not {type(calib).__name__}") from None
        source = "iterable"
    batches: list[dict[str, np.ndarray]] = []
    total = 0
    for i, feeds in enumerate(as_feed_batches(model, calib, batch_size=batch_size)):
        if not isinstance(feeds, dict):
            raise DataError(f"calibration item {i} is a {type(feeds).__name__}, expected a dict of input arrays")
        for name, a in feeds.items():
            if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).sum())
                raise DataError(f"calibration batch {i}: input {name!r} has {bad} NaN/Inf value(s)",
                                hint="clean the data before calibrating")
            if static is not None and a.ndim > 0 and a.shape[0] != static:
                raise DataError(f"calibration batch {i}: input {name!r} has batch {a.shape[0]}, "
                                f"the model fixes the batch size to {static}")
        n = _samples_in(feeds)
        if num_calib is not None and total + n > num_calib:
            keep = num_calib - total
            if keep <= 0 or (static is not None and keep < static):
                break
            feeds = {k: v[:keep] for k, v in feeds.items()}
            n = keep
        batches.append(feeds)
        total += n
        if num_calib is not None and total >= num_calib:
            break
    if total < min_samples:
        raise DataError(f"calibration got {total} sample(s) for {model.name!r}; at least {min_samples} are needed",
                        hint="give more samples, or lower min_samples=... if you know what you are doing")
    return CalibrationSet(batches, total, source)


class ProgressReader(CalibrationDataReader):
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
